from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field


T = TypeVar("T", bound="AccountView")


@_attrs_define
class AccountView:
    """An account as its holder sees it.

    Attributes:
        available_minor (int): What can be spent: the balance minus pending debits.
        balance_minor (int): `credits_posted - debits_posted`.
        credits_pending (int): Reserved by pending credits.
        credits_posted (int): Posted credits.
        currency (str): ISO 4217 code.
        debits_pending (int): Reserved by pending debits (bounties being funded).
        debits_posted (int): Posted debits.
        id (str): Its id.
        kind (str): `tenant`, `escrow`, `platform` or `external`.
    """

    available_minor: int
    balance_minor: int
    credits_pending: int
    credits_posted: int
    currency: str
    debits_pending: int
    debits_posted: int
    id: str
    kind: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        available_minor = self.available_minor

        balance_minor = self.balance_minor

        credits_pending = self.credits_pending

        credits_posted = self.credits_posted

        currency = self.currency

        debits_pending = self.debits_pending

        debits_posted = self.debits_posted

        id = self.id

        kind = self.kind

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "available_minor": available_minor,
                "balance_minor": balance_minor,
                "credits_pending": credits_pending,
                "credits_posted": credits_posted,
                "currency": currency,
                "debits_pending": debits_pending,
                "debits_posted": debits_posted,
                "id": id,
                "kind": kind,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        available_minor = d.pop("available_minor")

        balance_minor = d.pop("balance_minor")

        credits_pending = d.pop("credits_pending")

        credits_posted = d.pop("credits_posted")

        currency = d.pop("currency")

        debits_pending = d.pop("debits_pending")

        debits_posted = d.pop("debits_posted")

        id = d.pop("id")

        kind = d.pop("kind")

        account_view = cls(
            available_minor=available_minor,
            balance_minor=balance_minor,
            credits_pending=credits_pending,
            credits_posted=credits_posted,
            currency=currency,
            debits_pending=debits_pending,
            debits_posted=debits_posted,
            id=id,
            kind=kind,
        )

        account_view.additional_properties = d
        return account_view

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
