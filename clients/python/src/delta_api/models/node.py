from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field


T = TypeVar("T", bound="Node")


@_attrs_define
class Node:
    """A node as `GET /v1/nodes` shows it (its URL is the operator's business
    and is not shown).

        Attributes:
            agents (int): Agents placed on it (all tenants).
            capacity (int): Execution slots.
            id (str): Node id.
            last_heartbeat_ms (int): Last heartbeat.
            load (int): Runs executing or queued at the last heartbeat.
            registered_at_ms (int): First heartbeat.
            status (str): `up` or `down`.
    """

    agents: int
    capacity: int
    id: str
    last_heartbeat_ms: int
    load: int
    registered_at_ms: int
    status: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        agents = self.agents

        capacity = self.capacity

        id = self.id

        last_heartbeat_ms = self.last_heartbeat_ms

        load = self.load

        registered_at_ms = self.registered_at_ms

        status = self.status

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "agents": agents,
                "capacity": capacity,
                "id": id,
                "last_heartbeat_ms": last_heartbeat_ms,
                "load": load,
                "registered_at_ms": registered_at_ms,
                "status": status,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        agents = d.pop("agents")

        capacity = d.pop("capacity")

        id = d.pop("id")

        last_heartbeat_ms = d.pop("last_heartbeat_ms")

        load = d.pop("load")

        registered_at_ms = d.pop("registered_at_ms")

        status = d.pop("status")

        node = cls(
            agents=agents,
            capacity=capacity,
            id=id,
            last_heartbeat_ms=last_heartbeat_ms,
            load=load,
            registered_at_ms=registered_at_ms,
            status=status,
        )

        node.additional_properties = d
        return node

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
