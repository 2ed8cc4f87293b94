from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field


T = TypeVar("T", bound="Lease")


@_attrs_define
class Lease:
    """A lease granted to a node.

    Attributes:
        agent_id (str): The agent whose budget it holds.
        expires_at_ms (int): When its tokens go back to the budget if it is not returned.
        granted (int): Tokens reserved: min(amount, available).
        lease_id (str): `lse_...`.
    """

    agent_id: str
    expires_at_ms: int
    granted: int
    lease_id: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        agent_id = self.agent_id

        expires_at_ms = self.expires_at_ms

        granted = self.granted

        lease_id = self.lease_id

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "agent_id": agent_id,
                "expires_at_ms": expires_at_ms,
                "granted": granted,
                "lease_id": lease_id,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        agent_id = d.pop("agent_id")

        expires_at_ms = d.pop("expires_at_ms")

        granted = d.pop("granted")

        lease_id = d.pop("lease_id")

        lease = cls(
            agent_id=agent_id,
            expires_at_ms=expires_at_ms,
            granted=granted,
            lease_id=lease_id,
        )

        lease.additional_properties = d
        return lease

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
