from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

from ..types import UNSET, Unset


T = TypeVar("T", bound="NewTokenRequest")


@_attrs_define
class NewTokenRequest:
    """Body of a token request.

    Attributes:
        amount (int): Tokens asked for (1 to the main agent's `max_request`).
        reason (str | Unset): Why (at most 1,000 characters; no control characters but newlines).
    """

    amount: int
    reason: str | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        amount = self.amount

        reason = self.reason

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "amount": amount,
            }
        )
        if reason is not UNSET:
            field_dict["reason"] = reason

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        amount = d.pop("amount")

        reason = d.pop("reason", UNSET)

        new_token_request = cls(
            amount=amount,
            reason=reason,
        )

        return new_token_request
