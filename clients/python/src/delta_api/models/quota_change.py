from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

from ..types import UNSET, Unset

from typing import cast


T = TypeVar("T", bound="QuotaChange")


@_attrs_define
class QuotaChange:
    """Body of `PUT /v1/operator/tenants/{id}/quotas`: each field given sets
    that limit for the tenant (values past 2^63 - 1 are kept as that, which
    is no limit); `null` returns it to the default; an absent one is left as
    it is.

        Attributes:
            agents (int | None | Unset): Agents at once.
            component_bytes (int | None | Unset): Component bytes.
            messages_per_day (int | None | Unset): Messages per UTC day.
    """

    agents: int | None | Unset = UNSET
    component_bytes: int | None | Unset = UNSET
    messages_per_day: int | None | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        agents: int | None | Unset
        if isinstance(self.agents, Unset):
            agents = UNSET
        else:
            agents = self.agents

        component_bytes: int | None | Unset
        if isinstance(self.component_bytes, Unset):
            component_bytes = UNSET
        else:
            component_bytes = self.component_bytes

        messages_per_day: int | None | Unset
        if isinstance(self.messages_per_day, Unset):
            messages_per_day = UNSET
        else:
            messages_per_day = self.messages_per_day

        field_dict: dict[str, Any] = {}

        field_dict.update({})
        if agents is not UNSET:
            field_dict["agents"] = agents
        if component_bytes is not UNSET:
            field_dict["component_bytes"] = component_bytes
        if messages_per_day is not UNSET:
            field_dict["messages_per_day"] = messages_per_day

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)

        def _parse_agents(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        agents = _parse_agents(d.pop("agents", UNSET))

        def _parse_component_bytes(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        component_bytes = _parse_component_bytes(d.pop("component_bytes", UNSET))

        def _parse_messages_per_day(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        messages_per_day = _parse_messages_per_day(d.pop("messages_per_day", UNSET))

        quota_change = cls(
            agents=agents,
            component_bytes=component_bytes,
            messages_per_day=messages_per_day,
        )

        return quota_change
