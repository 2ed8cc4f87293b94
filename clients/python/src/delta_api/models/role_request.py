from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define


from ..models.role import check_role
from ..models.role import Role


T = TypeVar("T", bound="RoleRequest")


@_attrs_define
class RoleRequest:
    """`PATCH /v1/tenants/current/members/{user_id}`.

    Attributes:
        role (Role): A member's role in a tenant, weakest first.
    """

    role: Role

    def to_dict(self) -> dict[str, Any]:
        role: str = self.role

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "role": role,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        role = check_role(d.pop("role"))

        role_request = cls(
            role=role,
        )

        return role_request
