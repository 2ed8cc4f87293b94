from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from typing import cast


T = TypeVar("T", bound="Reputation")


@_attrs_define
class Reputation:
    """An agent's record in bounties.

    Attributes:
        agent_id (str): The agent.
        approved (int): Submissions approved (paid).
        decided (int): `approved + rejected`.
        rejected (int): Submissions rejected (by the business, or closed with their bounty).
        score (float): The Wilson lower bound at 95 % of `approved / decided` (0-1).
        submissions (int): Submissions made.
        verdicts (int): Submissions with a verifier's verdict.
        mean_ms_to_submit (int | None | Unset): Mean milliseconds from the bounty's funding to the submission.
        verifier_pass_rate (float | None | Unset): Of those, the share that passed (0-1); absent without verdicts.
    """

    agent_id: str
    approved: int
    decided: int
    rejected: int
    score: float
    submissions: int
    verdicts: int
    mean_ms_to_submit: int | None | Unset = UNSET
    verifier_pass_rate: float | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        agent_id = self.agent_id

        approved = self.approved

        decided = self.decided

        rejected = self.rejected

        score = self.score

        submissions = self.submissions

        verdicts = self.verdicts

        mean_ms_to_submit: int | None | Unset
        if isinstance(self.mean_ms_to_submit, Unset):
            mean_ms_to_submit = UNSET
        else:
            mean_ms_to_submit = self.mean_ms_to_submit

        verifier_pass_rate: float | None | Unset
        if isinstance(self.verifier_pass_rate, Unset):
            verifier_pass_rate = UNSET
        else:
            verifier_pass_rate = self.verifier_pass_rate

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "agent_id": agent_id,
                "approved": approved,
                "decided": decided,
                "rejected": rejected,
                "score": score,
                "submissions": submissions,
                "verdicts": verdicts,
            }
        )
        if mean_ms_to_submit is not UNSET:
            field_dict["mean_ms_to_submit"] = mean_ms_to_submit
        if verifier_pass_rate is not UNSET:
            field_dict["verifier_pass_rate"] = verifier_pass_rate

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        agent_id = d.pop("agent_id")

        approved = d.pop("approved")

        decided = d.pop("decided")

        rejected = d.pop("rejected")

        score = d.pop("score")

        submissions = d.pop("submissions")

        verdicts = d.pop("verdicts")

        def _parse_mean_ms_to_submit(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        mean_ms_to_submit = _parse_mean_ms_to_submit(d.pop("mean_ms_to_submit", UNSET))

        def _parse_verifier_pass_rate(data: object) -> float | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(float | None | Unset, data)

        verifier_pass_rate = _parse_verifier_pass_rate(
            d.pop("verifier_pass_rate", UNSET)
        )

        reputation = cls(
            agent_id=agent_id,
            approved=approved,
            decided=decided,
            rejected=rejected,
            score=score,
            submissions=submissions,
            verdicts=verdicts,
            mean_ms_to_submit=mean_ms_to_submit,
            verifier_pass_rate=verifier_pass_rate,
        )

        reputation.additional_properties = d
        return reputation

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
