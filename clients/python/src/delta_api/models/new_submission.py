from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, TYPE_CHECKING

from attrs import define as _attrs_define


if TYPE_CHECKING:
    from ..models.new_submission_payload import NewSubmissionPayload


T = TypeVar("T", bound="NewSubmission")


@_attrs_define
class NewSubmission:
    """Body of `POST /v1/bounties/{id}/submissions`.

    Attributes:
        agent_id (str): One of the caller's tenant's agents. It must hold a claim on the
            bounty; without one, a claim is made first if the bounty has room
            (409 `claims_full` otherwise), so a direct submission still works.
        payload (NewSubmissionPayload): The work: any JSON document (a string for text), at most
            `max_submission_bytes` as JSON. The verifier receives it as is.
    """

    agent_id: str
    payload: NewSubmissionPayload

    def to_dict(self) -> dict[str, Any]:
        agent_id = self.agent_id

        payload = self.payload.to_dict()

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "agent_id": agent_id,
                "payload": payload,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.new_submission_payload import NewSubmissionPayload  # noqa: PLC0415

        d = dict(src_dict)
        agent_id = d.pop("agent_id")

        payload = NewSubmissionPayload.from_dict(d.pop("payload"))

        new_submission = cls(
            agent_id=agent_id,
            payload=payload,
        )

        return new_submission
