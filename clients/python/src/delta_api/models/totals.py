from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field


T = TypeVar("T", bound="Totals")


@_attrs_define
class Totals:
    """The ledger's sums over every account of a currency (operators only):
    both are zero in a sound ledger.

        Attributes:
            currency (str): The currency.
            pending_minor (int): Σ (credits_pending - debits_pending).
            posted_minor (int): Σ (credits_posted - debits_posted).
    """

    currency: str
    pending_minor: int
    posted_minor: int
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        currency = self.currency

        pending_minor = self.pending_minor

        posted_minor = self.posted_minor

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "currency": currency,
                "pending_minor": pending_minor,
                "posted_minor": posted_minor,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        currency = d.pop("currency")

        pending_minor = d.pop("pending_minor")

        posted_minor = d.pop("posted_minor")

        totals = cls(
            currency=currency,
            pending_minor=pending_minor,
            posted_minor=posted_minor,
        )

        totals.additional_properties = d
        return totals

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
