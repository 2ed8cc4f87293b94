from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field


T = TypeVar("T", bound="KvKey")


@_attrs_define
class KvKey:
    """A key as listed.

    Attributes:
        key (str): The key.
        size (int): Bytes of its value.
        updated_at_ms (int): When it was written.
        version (int): Its version.
    """

    key: str
    size: int
    updated_at_ms: int
    version: int
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        key = self.key

        size = self.size

        updated_at_ms = self.updated_at_ms

        version = self.version

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "key": key,
                "size": size,
                "updated_at_ms": updated_at_ms,
                "version": version,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        key = d.pop("key")

        size = d.pop("size")

        updated_at_ms = d.pop("updated_at_ms")

        version = d.pop("version")

        kv_key = cls(
            key=key,
            size=size,
            updated_at_ms=updated_at_ms,
            version=version,
        )

        kv_key.additional_properties = d
        return kv_key

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
