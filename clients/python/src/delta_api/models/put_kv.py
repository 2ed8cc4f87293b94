from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

from ..types import UNSET, Unset

from typing import cast


T = TypeVar("T", bound="PutKv")


@_attrs_define
class PutKv:
    """Body of `PUT /v1/agents/{id}/kv/{key}`: exactly one of `value` and
    `value_base64`.

        Attributes:
            expected_version (int | None | Unset): Compare-and-swap: store only if the current version is this (0: only
                if the key does not exist); 409 `version_conflict` otherwise.
            value (None | str | Unset): The value as text.
            value_base64 (None | str | Unset): The value as base64 (for bytes that are not text).
    """

    expected_version: int | None | Unset = UNSET
    value: None | str | Unset = UNSET
    value_base64: None | str | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        expected_version: int | None | Unset
        if isinstance(self.expected_version, Unset):
            expected_version = UNSET
        else:
            expected_version = self.expected_version

        value: None | str | Unset
        if isinstance(self.value, Unset):
            value = UNSET
        else:
            value = self.value

        value_base64: None | str | Unset
        if isinstance(self.value_base64, Unset):
            value_base64 = UNSET
        else:
            value_base64 = self.value_base64

        field_dict: dict[str, Any] = {}

        field_dict.update({})
        if expected_version is not UNSET:
            field_dict["expected_version"] = expected_version
        if value is not UNSET:
            field_dict["value"] = value
        if value_base64 is not UNSET:
            field_dict["value_base64"] = value_base64

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)

        def _parse_expected_version(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        expected_version = _parse_expected_version(d.pop("expected_version", UNSET))

        def _parse_value(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        value = _parse_value(d.pop("value", UNSET))

        def _parse_value_base64(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        value_base64 = _parse_value_base64(d.pop("value_base64", UNSET))

        put_kv = cls(
            expected_version=expected_version,
            value=value,
            value_base64=value_base64,
        )

        return put_kv
