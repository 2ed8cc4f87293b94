from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

from ..types import UNSET, Unset

from typing import cast


T = TypeVar("T", bound="RegisterRequest")


@_attrs_define
class RegisterRequest:
    """`POST /v1/auth/register`.

    Attributes:
        email (str): Email (trimmed and lowercased).
        password (str): 12-1024 characters.
        tenant_name (None | str | Unset): Name of the personal tenant (default: derived from the email).
    """

    email: str
    password: str
    tenant_name: None | str | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        email = self.email

        password = self.password

        tenant_name: None | str | Unset
        if isinstance(self.tenant_name, Unset):
            tenant_name = UNSET
        else:
            tenant_name = self.tenant_name

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "email": email,
                "password": password,
            }
        )
        if tenant_name is not UNSET:
            field_dict["tenant_name"] = tenant_name

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        email = d.pop("email")

        password = d.pop("password")

        def _parse_tenant_name(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        tenant_name = _parse_tenant_name(d.pop("tenant_name", UNSET))

        register_request = cls(
            email=email,
            password=password,
            tenant_name=tenant_name,
        )

        return register_request
