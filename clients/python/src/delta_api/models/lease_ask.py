from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

from ..types import UNSET, Unset


T = TypeVar("T", bound="LeaseAsk")


@_attrs_define
class LeaseAsk:
    """Body of `POST /v1/nodes/leases`.

    Attributes:
        agent_id (str): The agent whose budget to lease from.
        amount (int): Tokens wanted.
        node_id (str): The calling node.
        min_amount (int | Unset): Fewest tokens worth having (at least 1).
    """

    agent_id: str
    amount: int
    node_id: str
    min_amount: int | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        agent_id = self.agent_id

        amount = self.amount

        node_id = self.node_id

        min_amount = self.min_amount

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "agent_id": agent_id,
                "amount": amount,
                "node_id": node_id,
            }
        )
        if min_amount is not UNSET:
            field_dict["min_amount"] = min_amount

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        agent_id = d.pop("agent_id")

        amount = d.pop("amount")

        node_id = d.pop("node_id")

        min_amount = d.pop("min_amount", UNSET)

        lease_ask = cls(
            agent_id=agent_id,
            amount=amount,
            node_id=node_id,
            min_amount=min_amount,
        )

        return lease_ask
