from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from typing import cast


T = TypeVar("T", bound="TokenRequest")


@_attrs_define
class TokenRequest:
    """A bot's token request.

    Attributes:
        agent_id (str): The bot that asked.
        amount (int): Tokens asked for.
        created_at_ms (int): When it was made.
        id (str): `tkr_...`.
        parent_agent_id (str): Its main agent, which gives the tokens.
        reason (str): Why.
        status (str): `pending`, `approved`, `denied` or `expired`.
        decided_at_ms (int | None | Unset): When it was decided.
        decided_by (None | str | Unset): `auto`, the deciding user's id, `expiry`, `roll-over` or
            `agent_deleted`.
    """

    agent_id: str
    amount: int
    created_at_ms: int
    id: str
    parent_agent_id: str
    reason: str
    status: str
    decided_at_ms: int | None | Unset = UNSET
    decided_by: None | str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        agent_id = self.agent_id

        amount = self.amount

        created_at_ms = self.created_at_ms

        id = self.id

        parent_agent_id = self.parent_agent_id

        reason = self.reason

        status = self.status

        decided_at_ms: int | None | Unset
        if isinstance(self.decided_at_ms, Unset):
            decided_at_ms = UNSET
        else:
            decided_at_ms = self.decided_at_ms

        decided_by: None | str | Unset
        if isinstance(self.decided_by, Unset):
            decided_by = UNSET
        else:
            decided_by = self.decided_by

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "agent_id": agent_id,
                "amount": amount,
                "created_at_ms": created_at_ms,
                "id": id,
                "parent_agent_id": parent_agent_id,
                "reason": reason,
                "status": status,
            }
        )
        if decided_at_ms is not UNSET:
            field_dict["decided_at_ms"] = decided_at_ms
        if decided_by is not UNSET:
            field_dict["decided_by"] = decided_by

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        agent_id = d.pop("agent_id")

        amount = d.pop("amount")

        created_at_ms = d.pop("created_at_ms")

        id = d.pop("id")

        parent_agent_id = d.pop("parent_agent_id")

        reason = d.pop("reason")

        status = d.pop("status")

        def _parse_decided_at_ms(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        decided_at_ms = _parse_decided_at_ms(d.pop("decided_at_ms", UNSET))

        def _parse_decided_by(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        decided_by = _parse_decided_by(d.pop("decided_by", UNSET))

        token_request = cls(
            agent_id=agent_id,
            amount=amount,
            created_at_ms=created_at_ms,
            id=id,
            parent_agent_id=parent_agent_id,
            reason=reason,
            status=status,
            decided_at_ms=decided_at_ms,
            decided_by=decided_by,
        )

        token_request.additional_properties = d
        return token_request

    @property
    def additional_keys(self) -> list[str]:
        return list(self.additional_properties.keys())

    def __getitem__(self, key: str) -> Any:
        return self.additional_properties[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.additional_properties[key] = value

    def __delitem__(self, key: str) -> None:
        del self.additional_properties[key]

    def __contains__(self, key: str) -> bool:
        return key in self.additional_properties
