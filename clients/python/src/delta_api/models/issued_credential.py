from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from typing import cast


T = TypeVar("T", bound="IssuedCredential")


@_attrs_define
class IssuedCredential:
    """A credential just issued (the only time its secret is shown).

    Attributes:
        credential (str): The credential: the node's `[control_plane] token_file` holds it.
        credential_id (str): Its id (`ncr_...`, the part before the dot).
        node_id (str): The node it is bound to.
        node_api_token (None | str | Unset): What the control plane presents to this node (and only to it): the
            node's own `token_file` holds it. Derived from the control plane's
            `node_api_secret_file` and the node id, so every issue answers the
            same; absent when that secret is not configured.
        others_expire_at_ms (int | None | Unset): When the other credentials of the node stop working, if this
            rotation retires them.
    """

    credential: str
    credential_id: str
    node_id: str
    node_api_token: None | str | Unset = UNSET
    others_expire_at_ms: int | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        credential = self.credential

        credential_id = self.credential_id

        node_id = self.node_id

        node_api_token: None | str | Unset
        if isinstance(self.node_api_token, Unset):
            node_api_token = UNSET
        else:
            node_api_token = self.node_api_token

        others_expire_at_ms: int | None | Unset
        if isinstance(self.others_expire_at_ms, Unset):
            others_expire_at_ms = UNSET
        else:
            others_expire_at_ms = self.others_expire_at_ms

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "credential": credential,
                "credential_id": credential_id,
                "node_id": node_id,
            }
        )
        if node_api_token is not UNSET:
            field_dict["node_api_token"] = node_api_token
        if others_expire_at_ms is not UNSET:
            field_dict["others_expire_at_ms"] = others_expire_at_ms

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        credential = d.pop("credential")

        credential_id = d.pop("credential_id")

        node_id = d.pop("node_id")

        def _parse_node_api_token(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        node_api_token = _parse_node_api_token(d.pop("node_api_token", UNSET))

        def _parse_others_expire_at_ms(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        others_expire_at_ms = _parse_others_expire_at_ms(
            d.pop("others_expire_at_ms", UNSET)
        )

        issued_credential = cls(
            credential=credential,
            credential_id=credential_id,
            node_id=node_id,
            node_api_token=node_api_token,
            others_expire_at_ms=others_expire_at_ms,
        )

        issued_credential.additional_properties = d
        return issued_credential

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
