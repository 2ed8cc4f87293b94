from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, TYPE_CHECKING

from attrs import define as _attrs_define
from attrs import field as _attrs_field


from typing import cast

if TYPE_CHECKING:
    from ..models.quota_limits import QuotaLimits


T = TypeVar("T", bound="TenantQuotas")


@_attrs_define
class TenantQuotas:
    """A tenant's quotas: what is in force and what is used.

    Attributes:
        limits (QuotaLimits): A tenant's limits in force.
        overridden (list[str]): Which limits the operator set for this tenant (the others are the
            configured defaults).
        tenant_id (str): The tenant.
        used (QuotaLimits): A tenant's limits in force.
    """

    limits: QuotaLimits
    overridden: list[str]
    tenant_id: str
    used: QuotaLimits
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        limits = self.limits.to_dict()

        overridden = self.overridden

        tenant_id = self.tenant_id

        used = self.used.to_dict()

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "limits": limits,
                "overridden": overridden,
                "tenant_id": tenant_id,
                "used": used,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.quota_limits import QuotaLimits  # noqa: PLC0415

        d = dict(src_dict)
        limits = QuotaLimits.from_dict(d.pop("limits"))

        overridden = cast(list[str], d.pop("overridden"))

        tenant_id = d.pop("tenant_id")

        used = QuotaLimits.from_dict(d.pop("used"))

        tenant_quotas = cls(
            limits=limits,
            overridden=overridden,
            tenant_id=tenant_id,
            used=used,
        )

        tenant_quotas.additional_properties = d
        return tenant_quotas

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
