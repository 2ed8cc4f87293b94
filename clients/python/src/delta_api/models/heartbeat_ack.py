from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field


T = TypeVar("T", bound="HeartbeatAck")


@_attrs_define
class HeartbeatAck:
    """Answer to a heartbeat.

    Attributes:
        heartbeat_timeout_secs (int): Silence after which the node is marked down.
        node_id (str): The node's id.
        status (str): `up`.
    """

    heartbeat_timeout_secs: int
    node_id: str
    status: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        heartbeat_timeout_secs = self.heartbeat_timeout_secs

        node_id = self.node_id

        status = self.status

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "heartbeat_timeout_secs": heartbeat_timeout_secs,
                "node_id": node_id,
                "status": status,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        heartbeat_timeout_secs = d.pop("heartbeat_timeout_secs")

        node_id = d.pop("node_id")

        status = d.pop("status")

        heartbeat_ack = cls(
            heartbeat_timeout_secs=heartbeat_timeout_secs,
            node_id=node_id,
            status=status,
        )

        heartbeat_ack.additional_properties = d
        return heartbeat_ack

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
