from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field


T = TypeVar("T", bound="LeaseReturn")


@_attrs_define
class LeaseReturn:
    """What returning a lease did.

    Attributes:
        charged (int): Tokens charged to the budget.
        lease_id (str): The lease.
        returned (int): Tokens of the lease that went back to the budget now (0 for an
            expired lease: its tokens went back when it expired).
        status (str): `returned`, or `expired` when it was returned after expiring.
        uncovered (int): Tokens spent that the budget could not cover.
    """

    charged: int
    lease_id: str
    returned: int
    status: str
    uncovered: int
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        charged = self.charged

        lease_id = self.lease_id

        returned = self.returned

        status = self.status

        uncovered = self.uncovered

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "charged": charged,
                "lease_id": lease_id,
                "returned": returned,
                "status": status,
                "uncovered": uncovered,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        charged = d.pop("charged")

        lease_id = d.pop("lease_id")

        returned = d.pop("returned")

        status = d.pop("status")

        uncovered = d.pop("uncovered")

        lease_return = cls(
            charged=charged,
            lease_id=lease_id,
            returned=returned,
            status=status,
            uncovered=uncovered,
        )

        lease_return.additional_properties = d
        return lease_return

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
