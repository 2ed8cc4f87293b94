from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define


T = TypeVar("T", bound="PutSecret")


@_attrs_define
class PutSecret:
    """Body of `PUT /v1/secrets/{name}`.

    Attributes:
        value (str): The value (1-8192 bytes, no control characters: it goes into HTTP
            header values). Never shown again.
    """

    value: str

    def to_dict(self) -> dict[str, Any]:
        value = self.value

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "value": value,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        value = d.pop("value")

        put_secret = cls(
            value=value,
        )

        return put_secret
