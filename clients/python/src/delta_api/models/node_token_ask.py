from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

from ..types import UNSET, Unset


T = TypeVar("T", bound="NodeTokenAsk")


@_attrs_define
class NodeTokenAsk:
    """Body of `POST /v1/nodes/token-requests`.

    Attributes:
        agent_id (str): The bot asking.
        amount (int): Tokens asked for.
        node_id (str): The calling node.
        reason (str | Unset): Why.
    """

    agent_id: str
    amount: int
    node_id: str
    reason: str | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        agent_id = self.agent_id

        amount = self.amount

        node_id = self.node_id

        reason = self.reason

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "agent_id": agent_id,
                "amount": amount,
                "node_id": node_id,
            }
        )
        if reason is not UNSET:
            field_dict["reason"] = reason

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        agent_id = d.pop("agent_id")

        amount = d.pop("amount")

        node_id = d.pop("node_id")

        reason = d.pop("reason", UNSET)

        node_token_ask = cls(
            agent_id=agent_id,
            amount=amount,
            node_id=node_id,
            reason=reason,
        )

        return node_token_ask
