from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field


T = TypeVar("T", bound="NodeTokenRequest")


@_attrs_define
class NodeTokenRequest:
    """A token request as a guest sees it.

    Attributes:
        amount (int): Tokens asked for.
        id (str): `tkr_...`.
        reason (str): Why.
        status (str): `pending`, `approved`, `denied` or `expired`.
    """

    amount: int
    id: str
    reason: str
    status: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        amount = self.amount

        id = self.id

        reason = self.reason

        status = self.status

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "amount": amount,
                "id": id,
                "reason": reason,
                "status": status,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        amount = d.pop("amount")

        id = d.pop("id")

        reason = d.pop("reason")

        status = d.pop("status")

        node_token_request = cls(
            amount=amount,
            id=id,
            reason=reason,
            status=status,
        )

        node_token_request.additional_properties = d
        return node_token_request

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
