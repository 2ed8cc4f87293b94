from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from typing import cast


T = TypeVar("T", bound="LeaseView")


@_attrs_define
class LeaseView:
    """A budget lease.

    Attributes:
        agent_id (str): The agent whose budget it is a slice of.
        created_at_ms (int): Unix ms.
        expires_at_ms (int): Unix ms.
        granted (int): Tokens granted.
        lease_id (str): `lse_...`.
        node_id (str): The node holding it.
        provisional (bool): Expired without its node reporting: its whole grant
            (`provisional_spent`) counts as spent until the node reports, which
            corrects it once. A node that never comes back leaves it so.
        provisional_spent (int): What the expiry counted as spent (0 unless it expired unreturned).
        status (str): `active`, `returned` or `expired`.
        returned_at_ms (int | None | Unset): Unix ms of the node's return (absent until then).
        spent (int | None | Unset): What the node reported spent (absent until it returns the lease).
    """

    agent_id: str
    created_at_ms: int
    expires_at_ms: int
    granted: int
    lease_id: str
    node_id: str
    provisional: bool
    provisional_spent: int
    status: str
    returned_at_ms: int | None | Unset = UNSET
    spent: int | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        agent_id = self.agent_id

        created_at_ms = self.created_at_ms

        expires_at_ms = self.expires_at_ms

        granted = self.granted

        lease_id = self.lease_id

        node_id = self.node_id

        provisional = self.provisional

        provisional_spent = self.provisional_spent

        status = self.status

        returned_at_ms: int | None | Unset
        if isinstance(self.returned_at_ms, Unset):
            returned_at_ms = UNSET
        else:
            returned_at_ms = self.returned_at_ms

        spent: int | None | Unset
        if isinstance(self.spent, Unset):
            spent = UNSET
        else:
            spent = self.spent

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "agent_id": agent_id,
                "created_at_ms": created_at_ms,
                "expires_at_ms": expires_at_ms,
                "granted": granted,
                "lease_id": lease_id,
                "node_id": node_id,
                "provisional": provisional,
                "provisional_spent": provisional_spent,
                "status": status,
            }
        )
        if returned_at_ms is not UNSET:
            field_dict["returned_at_ms"] = returned_at_ms
        if spent is not UNSET:
            field_dict["spent"] = spent

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        agent_id = d.pop("agent_id")

        created_at_ms = d.pop("created_at_ms")

        expires_at_ms = d.pop("expires_at_ms")

        granted = d.pop("granted")

        lease_id = d.pop("lease_id")

        node_id = d.pop("node_id")

        provisional = d.pop("provisional")

        provisional_spent = d.pop("provisional_spent")

        status = d.pop("status")

        def _parse_returned_at_ms(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        returned_at_ms = _parse_returned_at_ms(d.pop("returned_at_ms", UNSET))

        def _parse_spent(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        spent = _parse_spent(d.pop("spent", UNSET))

        lease_view = cls(
            agent_id=agent_id,
            created_at_ms=created_at_ms,
            expires_at_ms=expires_at_ms,
            granted=granted,
            lease_id=lease_id,
            node_id=node_id,
            provisional=provisional,
            provisional_spent=provisional_spent,
            status=status,
            returned_at_ms=returned_at_ms,
            spent=spent,
        )

        lease_view.additional_properties = d
        return lease_view

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
