from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define


from ..models.role import check_role
from ..models.role import Role


T = TypeVar("T", bound="AddMemberRequest")


@_attrs_define
class AddMemberRequest:
    """`POST /v1/tenants/current/members`.

    Attributes:
        email (str): Email to invite (with or without an account).
        role (Role): A member's role in a tenant, weakest first.
    """

    email: str
    role: Role

    def to_dict(self) -> dict[str, Any]:
        email = self.email

        role: str = self.role

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "email": email,
                "role": role,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        email = d.pop("email")

        role = check_role(d.pop("role"))

        add_member_request = cls(
            email=email,
            role=role,
        )

        return add_member_request
