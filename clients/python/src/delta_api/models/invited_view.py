from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field


from ..models.role import check_role
from ..models.role import Role


T = TypeVar("T", bound="InvitedView")


@_attrs_define
class InvitedView:
    """Answer to an invitation: the same whether or not the email has an
    account (no enumeration).

        Attributes:
            email (str): The invited email (normalised).
            expires_at_ms (int): The invitation lapses then, ms.
            role (Role): A member's role in a tenant, weakest first.
            status (str): `invited`.
    """

    email: str
    expires_at_ms: int
    role: Role
    status: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        email = self.email

        expires_at_ms = self.expires_at_ms

        role: str = self.role

        status = self.status

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "email": email,
                "expires_at_ms": expires_at_ms,
                "role": role,
                "status": status,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        email = d.pop("email")

        expires_at_ms = d.pop("expires_at_ms")

        role = check_role(d.pop("role"))

        status = d.pop("status")

        invited_view = cls(
            email=email,
            expires_at_ms=expires_at_ms,
            role=role,
            status=status,
        )

        invited_view.additional_properties = d
        return invited_view

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
