from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from typing import cast


T = TypeVar("T", bound="CredentialInfo")


@_attrs_define
class CredentialInfo:
    """A credential as listed (never its secret).

    Attributes:
        active (bool): Whether it works now.
        created_at_ms (int): Issued.
        id (str): `ncr_...`.
        node_id (str): The node it is bound to.
        expires_at_ms (int | None | Unset): Stops working then (retired by a rotation).
        revoked_at_ms (int | None | Unset): Revoked.
    """

    active: bool
    created_at_ms: int
    id: str
    node_id: str
    expires_at_ms: int | None | Unset = UNSET
    revoked_at_ms: int | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        active = self.active

        created_at_ms = self.created_at_ms

        id = self.id

        node_id = self.node_id

        expires_at_ms: int | None | Unset
        if isinstance(self.expires_at_ms, Unset):
            expires_at_ms = UNSET
        else:
            expires_at_ms = self.expires_at_ms

        revoked_at_ms: int | None | Unset
        if isinstance(self.revoked_at_ms, Unset):
            revoked_at_ms = UNSET
        else:
            revoked_at_ms = self.revoked_at_ms

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "active": active,
                "created_at_ms": created_at_ms,
                "id": id,
                "node_id": node_id,
            }
        )
        if expires_at_ms is not UNSET:
            field_dict["expires_at_ms"] = expires_at_ms
        if revoked_at_ms is not UNSET:
            field_dict["revoked_at_ms"] = revoked_at_ms

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        active = d.pop("active")

        created_at_ms = d.pop("created_at_ms")

        id = d.pop("id")

        node_id = d.pop("node_id")

        def _parse_expires_at_ms(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        expires_at_ms = _parse_expires_at_ms(d.pop("expires_at_ms", UNSET))

        def _parse_revoked_at_ms(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        revoked_at_ms = _parse_revoked_at_ms(d.pop("revoked_at_ms", UNSET))

        credential_info = cls(
            active=active,
            created_at_ms=created_at_ms,
            id=id,
            node_id=node_id,
            expires_at_ms=expires_at_ms,
            revoked_at_ms=revoked_at_ms,
        )

        credential_info.additional_properties = d
        return credential_info

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
