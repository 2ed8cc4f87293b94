from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset


T = TypeVar("T", bound="UsageAck")


@_attrs_define
class UsageAck:
    """Answer to a usage batch.

    Attributes:
        accepted (int): Records stored now.
        batch_id (str): The batch.
        duplicates (int): Records already stored (a resent batch or record).
        rejected (int | Unset): Records that cannot be counted (no run id, or an agent of another
            tenant than the record claims); logged and dropped.
    """

    accepted: int
    batch_id: str
    duplicates: int
    rejected: int | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        accepted = self.accepted

        batch_id = self.batch_id

        duplicates = self.duplicates

        rejected = self.rejected

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "accepted": accepted,
                "batch_id": batch_id,
                "duplicates": duplicates,
            }
        )
        if rejected is not UNSET:
            field_dict["rejected"] = rejected

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        accepted = d.pop("accepted")

        batch_id = d.pop("batch_id")

        duplicates = d.pop("duplicates")

        rejected = d.pop("rejected", UNSET)

        usage_ack = cls(
            accepted=accepted,
            batch_id=batch_id,
            duplicates=duplicates,
            rejected=rejected,
        )

        usage_ack.additional_properties = d
        return usage_ack

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
