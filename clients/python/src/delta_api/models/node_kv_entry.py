from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field


T = TypeVar("T", bound="NodeKvEntry")


@_attrs_define
class NodeKvEntry:
    """An entry as a node gets it.

    Attributes:
        key (str): The key.
        updated_at_ms (int): When it was written.
        value_base64 (str): The value, base64.
        version (int): Its version.
    """

    key: str
    updated_at_ms: int
    value_base64: str
    version: int
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        key = self.key

        updated_at_ms = self.updated_at_ms

        value_base64 = self.value_base64

        version = self.version

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "key": key,
                "updated_at_ms": updated_at_ms,
                "value_base64": value_base64,
                "version": version,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        key = d.pop("key")

        updated_at_ms = d.pop("updated_at_ms")

        value_base64 = d.pop("value_base64")

        version = d.pop("version")

        node_kv_entry = cls(
            key=key,
            updated_at_ms=updated_at_ms,
            value_base64=value_base64,
            version=version,
        )

        node_kv_entry.additional_properties = d
        return node_kv_entry

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
