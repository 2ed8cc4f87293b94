from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field


T = TypeVar("T", bound="Heartbeat")


@_attrs_define
class Heartbeat:
    """Body of `POST /v1/nodes/heartbeat`.

    Attributes:
        capacity (int): Execution slots.
        load (int): Runs executing or queued.
        node_id (str): The node's id (`node_id` in its configuration).
        url (str): Where the control plane reaches it (`http(s)://host:port`).
    """

    capacity: int
    load: int
    node_id: str
    url: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        capacity = self.capacity

        load = self.load

        node_id = self.node_id

        url = self.url

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "capacity": capacity,
                "load": load,
                "node_id": node_id,
                "url": url,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        capacity = d.pop("capacity")

        load = d.pop("load")

        node_id = d.pop("node_id")

        url = d.pop("url")

        heartbeat = cls(
            capacity=capacity,
            load=load,
            node_id=node_id,
            url=url,
        )

        heartbeat.additional_properties = d
        return heartbeat

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
