from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, TYPE_CHECKING

from attrs import define as _attrs_define
from attrs import field as _attrs_field


if TYPE_CHECKING:
    from ..models.tenant_ref import TenantRef
    from ..models.user_view import UserView


T = TypeVar("T", bound="RegisterResponse")


@_attrs_define
class RegisterResponse:
    """The new user and their personal tenant.

    Attributes:
        tenant (TenantRef): A tenant's id and name.
        user (UserView): A user as the API shows it.
    """

    tenant: TenantRef
    user: UserView
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        tenant = self.tenant.to_dict()

        user = self.user.to_dict()

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "tenant": tenant,
                "user": user,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.tenant_ref import TenantRef  # noqa: PLC0415
        from ..models.user_view import UserView  # noqa: PLC0415

        d = dict(src_dict)
        tenant = TenantRef.from_dict(d.pop("tenant"))

        user = UserView.from_dict(d.pop("user"))

        register_response = cls(
            tenant=tenant,
            user=user,
        )

        register_response.additional_properties = d
        return register_response

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
