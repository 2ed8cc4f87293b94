from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field


T = TypeVar("T", bound="QuotaLimits")


@_attrs_define
class QuotaLimits:
    """A tenant's limits in force.

    Attributes:
        agents (int): Agents at once.
        component_bytes (int): Bytes of components the tenant may keep.
        messages_per_day (int): Messages per UTC day.
    """

    agents: int
    component_bytes: int
    messages_per_day: int
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        agents = self.agents

        component_bytes = self.component_bytes

        messages_per_day = self.messages_per_day

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "agents": agents,
                "component_bytes": component_bytes,
                "messages_per_day": messages_per_day,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        agents = d.pop("agents")

        component_bytes = d.pop("component_bytes")

        messages_per_day = d.pop("messages_per_day")

        quota_limits = cls(
            agents=agents,
            component_bytes=component_bytes,
            messages_per_day=messages_per_day,
        )

        quota_limits.additional_properties = d
        return quota_limits

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
