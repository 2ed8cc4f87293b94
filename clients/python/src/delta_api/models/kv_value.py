from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from typing import cast


T = TypeVar("T", bound="KvValue")


@_attrs_define
class KvValue:
    """One key's value.

    Attributes:
        key (str): The key.
        updated_at_ms (int): When it was written.
        value_base64 (str): The value, base64 (always).
        version (int): Its version.
        value (None | str | Unset): The value as text, when it is UTF-8.
    """

    key: str
    updated_at_ms: int
    value_base64: str
    version: int
    value: None | str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        key = self.key

        updated_at_ms = self.updated_at_ms

        value_base64 = self.value_base64

        version = self.version

        value: None | str | Unset
        if isinstance(self.value, Unset):
            value = UNSET
        else:
            value = self.value

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
        if value is not UNSET:
            field_dict["value"] = value

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        key = d.pop("key")

        updated_at_ms = d.pop("updated_at_ms")

        value_base64 = d.pop("value_base64")

        version = d.pop("version")

        def _parse_value(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        value = _parse_value(d.pop("value", UNSET))

        kv_value = cls(
            key=key,
            updated_at_ms=updated_at_ms,
            value_base64=value_base64,
            version=version,
            value=value,
        )

        kv_value.additional_properties = d
        return kv_value

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
