from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

from ..types import UNSET, Unset

from ..models.set_tier_tier import check_set_tier_tier
from ..models.set_tier_tier import SetTierTier
from typing import cast


T = TypeVar("T", bound="SetTier")


@_attrs_define
class SetTier:
    """Body of `PUT /v1/budget/users/{user_id}`.

    Attributes:
        tier (SetTierTier): A tier of the configuration's `[tiers]`.
        tenant_id (None | str | Unset): The tenant whose account of the user changes (default: the
            operator's current tenant).
    """

    tier: SetTierTier
    tenant_id: None | str | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        tier: str = self.tier

        tenant_id: None | str | Unset
        if isinstance(self.tenant_id, Unset):
            tenant_id = UNSET
        else:
            tenant_id = self.tenant_id

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "tier": tier,
            }
        )
        if tenant_id is not UNSET:
            field_dict["tenant_id"] = tenant_id

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        tier = check_set_tier_tier(d.pop("tier"))

        def _parse_tenant_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        tenant_id = _parse_tenant_id(d.pop("tenant_id", UNSET))

        set_tier = cls(
            tier=tier,
            tenant_id=tenant_id,
        )

        return set_tier
