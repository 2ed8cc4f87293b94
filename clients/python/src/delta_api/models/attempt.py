from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from typing import cast


T = TypeVar("T", bound="Attempt")


@_attrs_define
class Attempt:
    """An agent run dispatched to attempt a bounty.

    Attributes:
        agent_id (str): The agent.
        bounty_id (str): The bounty.
        claim_id (str): The claim it works under.
        created_at_ms (int): Created.
        id (str): `att_...`.
        run_id (str): The run (`GET /v1/runs/{id}`).
        status (str): `running`, `submitted` (its output became `submission_id`) or
            `failed` (see `reason`; nothing was submitted).
        tenant_id (str): The agent's tenant.
        updated_at_ms (int): Last changed.
        reason (None | str | Unset): Why it failed.
        submission_id (None | str | Unset): The submission made from the run's output.
    """

    agent_id: str
    bounty_id: str
    claim_id: str
    created_at_ms: int
    id: str
    run_id: str
    status: str
    tenant_id: str
    updated_at_ms: int
    reason: None | str | Unset = UNSET
    submission_id: None | str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        agent_id = self.agent_id

        bounty_id = self.bounty_id

        claim_id = self.claim_id

        created_at_ms = self.created_at_ms

        id = self.id

        run_id = self.run_id

        status = self.status

        tenant_id = self.tenant_id

        updated_at_ms = self.updated_at_ms

        reason: None | str | Unset
        if isinstance(self.reason, Unset):
            reason = UNSET
        else:
            reason = self.reason

        submission_id: None | str | Unset
        if isinstance(self.submission_id, Unset):
            submission_id = UNSET
        else:
            submission_id = self.submission_id

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "agent_id": agent_id,
                "bounty_id": bounty_id,
                "claim_id": claim_id,
                "created_at_ms": created_at_ms,
                "id": id,
                "run_id": run_id,
                "status": status,
                "tenant_id": tenant_id,
                "updated_at_ms": updated_at_ms,
            }
        )
        if reason is not UNSET:
            field_dict["reason"] = reason
        if submission_id is not UNSET:
            field_dict["submission_id"] = submission_id

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        agent_id = d.pop("agent_id")

        bounty_id = d.pop("bounty_id")

        claim_id = d.pop("claim_id")

        created_at_ms = d.pop("created_at_ms")

        id = d.pop("id")

        run_id = d.pop("run_id")

        status = d.pop("status")

        tenant_id = d.pop("tenant_id")

        updated_at_ms = d.pop("updated_at_ms")

        def _parse_reason(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        reason = _parse_reason(d.pop("reason", UNSET))

        def _parse_submission_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        submission_id = _parse_submission_id(d.pop("submission_id", UNSET))

        attempt = cls(
            agent_id=agent_id,
            bounty_id=bounty_id,
            claim_id=claim_id,
            created_at_ms=created_at_ms,
            id=id,
            run_id=run_id,
            status=status,
            tenant_id=tenant_id,
            updated_at_ms=updated_at_ms,
            reason=reason,
            submission_id=submission_id,
        )

        attempt.additional_properties = d
        return attempt

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
