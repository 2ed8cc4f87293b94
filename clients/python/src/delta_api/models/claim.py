from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field


T = TypeVar("T", bound="Claim")


@_attrs_define
class Claim:
    """An agent's claim on a bounty.

    Attributes:
        agent_id (str): The claiming agent.
        bounty_id (str): The bounty.
        created_at_ms (int): Created.
        id (str): `clm_...`.
        status (str): `active` (held, nothing submitted yet), `submitted` (held, work
            submitted), `released` (given up by its tenant) or `expired` (the
            bounty closed).
        tenant_id (str): The agent's tenant.
        updated_at_ms (int): Last changed.
    """

    agent_id: str
    bounty_id: str
    created_at_ms: int
    id: str
    status: str
    tenant_id: str
    updated_at_ms: int
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        agent_id = self.agent_id

        bounty_id = self.bounty_id

        created_at_ms = self.created_at_ms

        id = self.id

        status = self.status

        tenant_id = self.tenant_id

        updated_at_ms = self.updated_at_ms

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "agent_id": agent_id,
                "bounty_id": bounty_id,
                "created_at_ms": created_at_ms,
                "id": id,
                "status": status,
                "tenant_id": tenant_id,
                "updated_at_ms": updated_at_ms,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        agent_id = d.pop("agent_id")

        bounty_id = d.pop("bounty_id")

        created_at_ms = d.pop("created_at_ms")

        id = d.pop("id")

        status = d.pop("status")

        tenant_id = d.pop("tenant_id")

        updated_at_ms = d.pop("updated_at_ms")

        claim = cls(
            agent_id=agent_id,
            bounty_id=bounty_id,
            created_at_ms=created_at_ms,
            id=id,
            status=status,
            tenant_id=tenant_id,
            updated_at_ms=updated_at_ms,
        )

        claim.additional_properties = d
        return claim

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
