from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field


T = TypeVar("T", bound="NodeBudget")


@_attrs_define
class NodeBudget:
    """What a node sees of an agent's budget.

    Attributes:
        allocated (int): Tokens the agent holds this period.
        available (int): allocated - spent - reserved.
        period (str): `YYYY-MM` (UTC).
        reserved (int): Tokens out on leases.
        spent (int): Tokens charged.
    """

    allocated: int
    available: int
    period: str
    reserved: int
    spent: int
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        allocated = self.allocated

        available = self.available

        period = self.period

        reserved = self.reserved

        spent = self.spent

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "allocated": allocated,
                "available": available,
                "period": period,
                "reserved": reserved,
                "spent": spent,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        allocated = d.pop("allocated")

        available = d.pop("available")

        period = d.pop("period")

        reserved = d.pop("reserved")

        spent = d.pop("spent")

        node_budget = cls(
            allocated=allocated,
            available=available,
            period=period,
            reserved=reserved,
            spent=spent,
        )

        node_budget.additional_properties = d
        return node_budget

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
