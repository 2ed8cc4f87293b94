from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, TYPE_CHECKING

from attrs import define as _attrs_define
from attrs import field as _attrs_field


from ..models.role import check_role
from ..models.role import Role
from typing import cast

if TYPE_CHECKING:
    from ..models.user_view import UserView


T = TypeVar("T", bound="MeResponse")


@_attrs_define
class MeResponse:
    """`GET /v1/me`.

    Attributes:
        operator (bool): Whether the user is a platform operator.
        role (Role): A member's role in a tenant, weakest first.
        scopes (list[str]): The credential's scopes (a session has them all).
        tenant_id (str): The tenant of this credential.
        user (UserView): A user as the API shows it.
        via (str): `session` or `api_key`.
    """

    operator: bool
    role: Role
    scopes: list[str]
    tenant_id: str
    user: UserView
    via: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        operator = self.operator

        role: str = self.role

        scopes = self.scopes

        tenant_id = self.tenant_id

        user = self.user.to_dict()

        via = self.via

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "operator": operator,
                "role": role,
                "scopes": scopes,
                "tenant_id": tenant_id,
                "user": user,
                "via": via,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.user_view import UserView  # noqa: PLC0415

        d = dict(src_dict)
        operator = d.pop("operator")

        role = check_role(d.pop("role"))

        scopes = cast(list[str], d.pop("scopes"))

        tenant_id = d.pop("tenant_id")

        user = UserView.from_dict(d.pop("user"))

        via = d.pop("via")

        me_response = cls(
            operator=operator,
            role=role,
            scopes=scopes,
            tenant_id=tenant_id,
            user=user,
            via=via,
        )

        me_response.additional_properties = d
        return me_response

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
