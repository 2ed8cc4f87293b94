from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

from ..types import UNSET, Unset

from typing import cast


T = TypeVar("T", bound="TopUp")


@_attrs_define
class TopUp:
    """Body of `POST /v1/operator/ledger/topups`.

    Attributes:
        amount_minor (int): Minor units (> 0).
        currency (str): ISO 4217 code, e.g. `EUR`.
        tenant_id (str): The tenant credited.
        transfer_id (None | str | Unset): The transfer's id, chosen by the caller: a retry with the same id
            and fields is answered as the first; default: a new id.
    """

    amount_minor: int
    currency: str
    tenant_id: str
    transfer_id: None | str | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        amount_minor = self.amount_minor

        currency = self.currency

        tenant_id = self.tenant_id

        transfer_id: None | str | Unset
        if isinstance(self.transfer_id, Unset):
            transfer_id = UNSET
        else:
            transfer_id = self.transfer_id

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "amount_minor": amount_minor,
                "currency": currency,
                "tenant_id": tenant_id,
            }
        )
        if transfer_id is not UNSET:
            field_dict["transfer_id"] = transfer_id

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        amount_minor = d.pop("amount_minor")

        currency = d.pop("currency")

        tenant_id = d.pop("tenant_id")

        def _parse_transfer_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        transfer_id = _parse_transfer_id(d.pop("transfer_id", UNSET))

        top_up = cls(
            amount_minor=amount_minor,
            currency=currency,
            tenant_id=tenant_id,
            transfer_id=transfer_id,
        )

        return top_up
