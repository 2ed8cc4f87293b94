from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field


from ..models.role import check_role
from ..models.role import Role


T = TypeVar("T", bound="PageInvitationViewItemsItem")


@_attrs_define
class PageInvitationViewItemsItem:
    """A pending invitation, as its invitee sees it.

    Attributes:
        created_at_ms (int): Made (or last renewed), ms.
        expires_at_ms (int): Lapses then, ms.
        id (str): `inv_...`.
        role (Role): A member's role in a tenant, weakest first.
        tenant_id (str): The tenant it is to.
        tenant_name (str): That tenant's name.
    """

    created_at_ms: int
    expires_at_ms: int
    id: str
    role: Role
    tenant_id: str
    tenant_name: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        created_at_ms = self.created_at_ms

        expires_at_ms = self.expires_at_ms

        id = self.id

        role: str = self.role

        tenant_id = self.tenant_id

        tenant_name = self.tenant_name

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "created_at_ms": created_at_ms,
                "expires_at_ms": expires_at_ms,
                "id": id,
                "role": role,
                "tenant_id": tenant_id,
                "tenant_name": tenant_name,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        created_at_ms = d.pop("created_at_ms")

        expires_at_ms = d.pop("expires_at_ms")

        id = d.pop("id")

        role = check_role(d.pop("role"))

        tenant_id = d.pop("tenant_id")

        tenant_name = d.pop("tenant_name")

        page_invitation_view_items_item = cls(
            created_at_ms=created_at_ms,
            expires_at_ms=expires_at_ms,
            id=id,
            role=role,
            tenant_id=tenant_id,
            tenant_name=tenant_name,
        )

        page_invitation_view_items_item.additional_properties = d
        return page_invitation_view_items_item

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
