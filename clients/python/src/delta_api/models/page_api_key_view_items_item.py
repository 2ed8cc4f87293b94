from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from typing import cast


T = TypeVar("T", bound="PageApiKeyViewItemsItem")


@_attrs_define
class PageApiKeyViewItemsItem:
    """A key as lists show it (never the secret or its hash).

    Attributes:
        created_at_ms (int): Creation time, ms.
        id (str): Key id.
        name (str): Label.
        prefix (str): Visible prefix.
        scopes (list[str]): Scopes.
        user_id (str): The user the key acts as.
        expires_at_ms (int | None | Unset): Expiry, ms (none: never).
        last_used_at_ms (int | None | Unset): When it last authenticated a request (recorded at most once a
            minute; none: never used).
        revoked_at_ms (int | None | Unset): When it was revoked, if it was.
    """

    created_at_ms: int
    id: str
    name: str
    prefix: str
    scopes: list[str]
    user_id: str
    expires_at_ms: int | None | Unset = UNSET
    last_used_at_ms: int | None | Unset = UNSET
    revoked_at_ms: int | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        created_at_ms = self.created_at_ms

        id = self.id

        name = self.name

        prefix = self.prefix

        scopes = self.scopes

        user_id = self.user_id

        expires_at_ms: int | None | Unset
        if isinstance(self.expires_at_ms, Unset):
            expires_at_ms = UNSET
        else:
            expires_at_ms = self.expires_at_ms

        last_used_at_ms: int | None | Unset
        if isinstance(self.last_used_at_ms, Unset):
            last_used_at_ms = UNSET
        else:
            last_used_at_ms = self.last_used_at_ms

        revoked_at_ms: int | None | Unset
        if isinstance(self.revoked_at_ms, Unset):
            revoked_at_ms = UNSET
        else:
            revoked_at_ms = self.revoked_at_ms

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "created_at_ms": created_at_ms,
                "id": id,
                "name": name,
                "prefix": prefix,
                "scopes": scopes,
                "user_id": user_id,
            }
        )
        if expires_at_ms is not UNSET:
            field_dict["expires_at_ms"] = expires_at_ms
        if last_used_at_ms is not UNSET:
            field_dict["last_used_at_ms"] = last_used_at_ms
        if revoked_at_ms is not UNSET:
            field_dict["revoked_at_ms"] = revoked_at_ms

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        created_at_ms = d.pop("created_at_ms")

        id = d.pop("id")

        name = d.pop("name")

        prefix = d.pop("prefix")

        scopes = cast(list[str], d.pop("scopes"))

        user_id = d.pop("user_id")

        def _parse_expires_at_ms(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        expires_at_ms = _parse_expires_at_ms(d.pop("expires_at_ms", UNSET))

        def _parse_last_used_at_ms(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        last_used_at_ms = _parse_last_used_at_ms(d.pop("last_used_at_ms", UNSET))

        def _parse_revoked_at_ms(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        revoked_at_ms = _parse_revoked_at_ms(d.pop("revoked_at_ms", UNSET))

        page_api_key_view_items_item = cls(
            created_at_ms=created_at_ms,
            id=id,
            name=name,
            prefix=prefix,
            scopes=scopes,
            user_id=user_id,
            expires_at_ms=expires_at_ms,
            last_used_at_ms=last_used_at_ms,
            revoked_at_ms=revoked_at_ms,
        )

        page_api_key_view_items_item.additional_properties = d
        return page_api_key_view_items_item

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
