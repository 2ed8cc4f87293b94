from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

from ..types import UNSET, Unset

from ..models.create_api_key_request_scopes_type_0_item import (
    check_create_api_key_request_scopes_type_0_item,
)
from ..models.create_api_key_request_scopes_type_0_item import (
    CreateApiKeyRequestScopesType0Item,
)
from typing import cast


T = TypeVar("T", bound="CreateApiKeyRequest")


@_attrs_define
class CreateApiKeyRequest:
    """`POST /v1/api-keys`.

    Attributes:
        name (str): A label (1-100 characters).
        expires_in_days (int | None | Unset): Days until the key expires (1-3650; default: never).
        scopes (list[CreateApiKeyRequestScopesType0Item] | None | Unset): Subset of the known scopes (default: all of
            them). A key may only be
            made with scopes the calling credential has.
    """

    name: str
    expires_in_days: int | None | Unset = UNSET
    scopes: list[CreateApiKeyRequestScopesType0Item] | None | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        name = self.name

        expires_in_days: int | None | Unset
        if isinstance(self.expires_in_days, Unset):
            expires_in_days = UNSET
        else:
            expires_in_days = self.expires_in_days

        scopes: list[str] | None | Unset
        if isinstance(self.scopes, Unset):
            scopes = UNSET
        elif isinstance(self.scopes, list):
            scopes = []
            for scopes_type_0_item_data in self.scopes:
                scopes_type_0_item: str = scopes_type_0_item_data
                scopes.append(scopes_type_0_item)

        else:
            scopes = self.scopes

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "name": name,
            }
        )
        if expires_in_days is not UNSET:
            field_dict["expires_in_days"] = expires_in_days
        if scopes is not UNSET:
            field_dict["scopes"] = scopes

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        name = d.pop("name")

        def _parse_expires_in_days(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        expires_in_days = _parse_expires_in_days(d.pop("expires_in_days", UNSET))

        def _parse_scopes(
            data: object,
        ) -> list[CreateApiKeyRequestScopesType0Item] | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, list):
                    raise TypeError()
                scopes_type_0 = []
                _scopes_type_0 = data
                for scopes_type_0_item_data in _scopes_type_0:
                    scopes_type_0_item = (
                        check_create_api_key_request_scopes_type_0_item(
                            scopes_type_0_item_data
                        )
                    )

                    scopes_type_0.append(scopes_type_0_item)

                return scopes_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(list[CreateApiKeyRequestScopesType0Item] | None | Unset, data)

        scopes = _parse_scopes(d.pop("scopes", UNSET))

        create_api_key_request = cls(
            name=name,
            expires_in_days=expires_in_days,
            scopes=scopes,
        )

        return create_api_key_request
