from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from typing import cast


T = TypeVar("T", bound="UsageRow")


@_attrs_define
class UsageRow:
    """One summed row.

    Attributes:
        detail (str): Model (LLM kinds), channel (message kinds), outcome (`runs`), or empty.
        kind (str): What is counted.
        quantity (int): The sum.
        agent_id (None | str | Unset): The agent, when grouped by agent.
        day (None | str | Unset): The day, when grouped by day.
        user_id (None | str | Unset): The agent's owner, when grouped by user.
    """

    detail: str
    kind: str
    quantity: int
    agent_id: None | str | Unset = UNSET
    day: None | str | Unset = UNSET
    user_id: None | str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        detail = self.detail

        kind = self.kind

        quantity = self.quantity

        agent_id: None | str | Unset
        if isinstance(self.agent_id, Unset):
            agent_id = UNSET
        else:
            agent_id = self.agent_id

        day: None | str | Unset
        if isinstance(self.day, Unset):
            day = UNSET
        else:
            day = self.day

        user_id: None | str | Unset
        if isinstance(self.user_id, Unset):
            user_id = UNSET
        else:
            user_id = self.user_id

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "detail": detail,
                "kind": kind,
                "quantity": quantity,
            }
        )
        if agent_id is not UNSET:
            field_dict["agent_id"] = agent_id
        if day is not UNSET:
            field_dict["day"] = day
        if user_id is not UNSET:
            field_dict["user_id"] = user_id

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        detail = d.pop("detail")

        kind = d.pop("kind")

        quantity = d.pop("quantity")

        def _parse_agent_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        agent_id = _parse_agent_id(d.pop("agent_id", UNSET))

        def _parse_day(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        day = _parse_day(d.pop("day", UNSET))

        def _parse_user_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        user_id = _parse_user_id(d.pop("user_id", UNSET))

        usage_row = cls(
            detail=detail,
            kind=kind,
            quantity=quantity,
            agent_id=agent_id,
            day=day,
            user_id=user_id,
        )

        usage_row.additional_properties = d
        return usage_row

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
