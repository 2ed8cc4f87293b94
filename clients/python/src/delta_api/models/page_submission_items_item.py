from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, TYPE_CHECKING

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from typing import cast

if TYPE_CHECKING:
    from ..models.artifact_ref import ArtifactRef
    from ..models.page_submission_items_item_payload import (
        PageSubmissionItemsItemPayload,
    )
    from ..models.page_submission_items_item_report import PageSubmissionItemsItemReport


T = TypeVar("T", bound="PageSubmissionItemsItem")


@_attrs_define
class PageSubmissionItemsItem:
    """A submission.

    Attributes:
        agent_id (str): The submitting agent.
        attempts (int): Verification attempts made.
        bounty_id (str): The bounty.
        created_at_ms (int): Created.
        id (str): `sub_...`.
        payload (PageSubmissionItemsItemPayload): The payload.
        report (PageSubmissionItemsItemReport): The verdict's reasons, or why verification failed or is pending.
        sha256 (str): sha256 of the payload's JSON text.
        status (str): `pending_verification` (no node could verify it yet: retried by the
            sweep or `POST /v1/submissions/{id}/verify`), `verified` (see
            `passed`), `verification_failed` (the verifier trapped, timed out or
            answered garbage; never approved), `approved` or `rejected`.
        tenant_id (str): The submitter's tenant.
        updated_at_ms (int): Last changed.
        artifact (ArtifactRef | None | Unset):
        passed (bool | None | Unset): The verdict, once verified.
        score_milli (int | None | Unset): The verdict's score in thousandths.
    """

    agent_id: str
    attempts: int
    bounty_id: str
    created_at_ms: int
    id: str
    payload: PageSubmissionItemsItemPayload
    report: PageSubmissionItemsItemReport
    sha256: str
    status: str
    tenant_id: str
    updated_at_ms: int
    artifact: ArtifactRef | None | Unset = UNSET
    passed: bool | None | Unset = UNSET
    score_milli: int | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from ..models.artifact_ref import ArtifactRef  # noqa: PLC0415

        agent_id = self.agent_id

        attempts = self.attempts

        bounty_id = self.bounty_id

        created_at_ms = self.created_at_ms

        id = self.id

        payload = self.payload.to_dict()

        report = self.report.to_dict()

        sha256 = self.sha256

        status = self.status

        tenant_id = self.tenant_id

        updated_at_ms = self.updated_at_ms

        artifact: dict[str, Any] | None | Unset
        if isinstance(self.artifact, Unset):
            artifact = UNSET
        elif isinstance(self.artifact, ArtifactRef):
            artifact = self.artifact.to_dict()
        else:
            artifact = self.artifact

        passed: bool | None | Unset
        if isinstance(self.passed, Unset):
            passed = UNSET
        else:
            passed = self.passed

        score_milli: int | None | Unset
        if isinstance(self.score_milli, Unset):
            score_milli = UNSET
        else:
            score_milli = self.score_milli

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "agent_id": agent_id,
                "attempts": attempts,
                "bounty_id": bounty_id,
                "created_at_ms": created_at_ms,
                "id": id,
                "payload": payload,
                "report": report,
                "sha256": sha256,
                "status": status,
                "tenant_id": tenant_id,
                "updated_at_ms": updated_at_ms,
            }
        )
        if artifact is not UNSET:
            field_dict["artifact"] = artifact
        if passed is not UNSET:
            field_dict["passed"] = passed
        if score_milli is not UNSET:
            field_dict["score_milli"] = score_milli

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.artifact_ref import ArtifactRef  # noqa: PLC0415
        from ..models.page_submission_items_item_payload import (
            PageSubmissionItemsItemPayload,
        )  # noqa: PLC0415
        from ..models.page_submission_items_item_report import (
            PageSubmissionItemsItemReport,
        )  # noqa: PLC0415

        d = dict(src_dict)
        agent_id = d.pop("agent_id")

        attempts = d.pop("attempts")

        bounty_id = d.pop("bounty_id")

        created_at_ms = d.pop("created_at_ms")

        id = d.pop("id")

        payload = PageSubmissionItemsItemPayload.from_dict(d.pop("payload"))

        report = PageSubmissionItemsItemReport.from_dict(d.pop("report"))

        sha256 = d.pop("sha256")

        status = d.pop("status")

        tenant_id = d.pop("tenant_id")

        updated_at_ms = d.pop("updated_at_ms")

        def _parse_artifact(data: object) -> ArtifactRef | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                artifact_type_1 = ArtifactRef.from_dict(data)

                return artifact_type_1
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(ArtifactRef | None | Unset, data)

        artifact = _parse_artifact(d.pop("artifact", UNSET))

        def _parse_passed(data: object) -> bool | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(bool | None | Unset, data)

        passed = _parse_passed(d.pop("passed", UNSET))

        def _parse_score_milli(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        score_milli = _parse_score_milli(d.pop("score_milli", UNSET))

        page_submission_items_item = cls(
            agent_id=agent_id,
            attempts=attempts,
            bounty_id=bounty_id,
            created_at_ms=created_at_ms,
            id=id,
            payload=payload,
            report=report,
            sha256=sha256,
            status=status,
            tenant_id=tenant_id,
            updated_at_ms=updated_at_ms,
            artifact=artifact,
            passed=passed,
            score_milli=score_milli,
        )

        page_submission_items_item.additional_properties = d
        return page_submission_items_item

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
