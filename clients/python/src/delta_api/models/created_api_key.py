from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from typing import cast


T = TypeVar("T", bound="CreatedApiKey")


@_attrs_define
class CreatedApiKey:
    """A new key; `key` is shown only here.

    Attributes:
        created_at_ms (int): Creation time, ms.
        id (str): Key id (`key_...`).
        key (str): The secret key, `dk_<prefix>_<secret>`: shown once, never again.
        name (str): Label.
        prefix (str): Visible prefix (part of the key).
        scopes (list[str]): Scopes.
        expires_at_ms (int | None | Unset): Expiry, ms (none: never).
    """

    created_at_ms: int
    id: str
    key: str
    name: str
    prefix: str
    scopes: list[str]
    expires_at_ms: int | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        created_at_ms = self.created_at_ms

        id = self.id

        key = self.key

        name = self.name

        prefix = self.prefix

        scopes = self.scopes

        expires_at_ms: int | None | Unset
        if isinstance(self.expires_at_ms, Unset):
            expires_at_ms = UNSET
        else:
            expires_at_ms = self.expires_at_ms

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "created_at_ms": created_at_ms,
                "id": id,
                "key": key,
                "name": name,
                "prefix": prefix,
                "scopes": scopes,
            }
        )
        if expires_at_ms is not UNSET:
            field_dict["expires_at_ms"] = expires_at_ms

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        created_at_ms = d.pop("created_at_ms")

        id = d.pop("id")

        key = d.pop("key")

        name = d.pop("name")

        prefix = d.pop("prefix")

        scopes = cast(list[str], d.pop("scopes"))

        def _parse_expires_at_ms(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        expires_at_ms = _parse_expires_at_ms(d.pop("expires_at_ms", UNSET))

        created_api_key = cls(
            created_at_ms=created_at_ms,
            id=id,
            key=key,
            name=name,
            prefix=prefix,
            scopes=scopes,
            expires_at_ms=expires_at_ms,
        )

        created_api_key.additional_properties = d
        return created_api_key

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
