from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from typing import cast


T = TypeVar("T", bound="Payment")


@_attrs_define
class Payment:
    """A bounty's payment at its provider.

    Attributes:
        payment_intent_id (str): The PaymentIntent (`pi_...`).
        provider (str): `stripe`.
        status (str): `awaiting_payment` (the business confirms the payment with the
            client secret; the bounty opens when Stripe reports the card
            authorized), `authorized`, `capture_pending`, `captured`,
            `cancel_pending`, `canceled` or `capture_failed` (the operator
            must look: see the audit log).
        client_secret (None | str | Unset): For Stripe.js to confirm the payment; only in the answer to
            `POST /v1/bounties/{id}/fund`.
    """

    payment_intent_id: str
    provider: str
    status: str
    client_secret: None | str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        payment_intent_id = self.payment_intent_id

        provider = self.provider

        status = self.status

        client_secret: None | str | Unset
        if isinstance(self.client_secret, Unset):
            client_secret = UNSET
        else:
            client_secret = self.client_secret

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "payment_intent_id": payment_intent_id,
                "provider": provider,
                "status": status,
            }
        )
        if client_secret is not UNSET:
            field_dict["client_secret"] = client_secret

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        payment_intent_id = d.pop("payment_intent_id")

        provider = d.pop("provider")

        status = d.pop("status")

        def _parse_client_secret(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        client_secret = _parse_client_secret(d.pop("client_secret", UNSET))

        payment = cls(
            payment_intent_id=payment_intent_id,
            provider=provider,
            status=status,
            client_secret=client_secret,
        )

        payment.additional_properties = d
        return payment

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
