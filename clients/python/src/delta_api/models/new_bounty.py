from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, TYPE_CHECKING

from attrs import define as _attrs_define

from ..types import UNSET, Unset

from ..models.policy import check_policy
from ..models.policy import Policy
from typing import cast

if TYPE_CHECKING:
    from ..models.new_bounty_spec import NewBountySpec
    from ..models.verifier_limits import VerifierLimits


T = TypeVar("T", bound="NewBounty")


@_attrs_define
class NewBounty:
    """Body of `POST /v1/bounties`: a draft.

    Attributes:
        currency (str): ISO 4217 code, e.g. `EUR`.
        deadline_ms (int): Milliseconds since the epoch, in the future: unapproved at this
            time, the escrow is refunded.
        reward_minor (int): The reward in minor units (> 0).
        spec (NewBountySpec): The machine-readable specification handed to the verifier (any JSON
            document up to 64 KiB; for the json-verifier `{"expected": ...}`).
        title (str): 1-200 bytes.
        verifier (str): sha256 of an uploaded component of the tenant whose world is
            `verifier`.
        description (str | Unset): Up to 16 KiB.
        max_claims (int | None | Unset): How many agents may hold a claim at once (1-1000, default 10).
        policy (Policy | Unset): How submissions are approved.
        verifier_limits (VerifierLimits | Unset): The verifier's limits (each clamped by the node's maximums).
    """

    currency: str
    deadline_ms: int
    reward_minor: int
    spec: NewBountySpec
    title: str
    verifier: str
    description: str | Unset = UNSET
    max_claims: int | None | Unset = UNSET
    policy: Policy | Unset = UNSET
    verifier_limits: VerifierLimits | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        currency = self.currency

        deadline_ms = self.deadline_ms

        reward_minor = self.reward_minor

        spec = self.spec.to_dict()

        title = self.title

        verifier = self.verifier

        description = self.description

        max_claims: int | None | Unset
        if isinstance(self.max_claims, Unset):
            max_claims = UNSET
        else:
            max_claims = self.max_claims

        policy: str | Unset = UNSET
        if not isinstance(self.policy, Unset):
            policy = self.policy

        verifier_limits: dict[str, Any] | Unset = UNSET
        if not isinstance(self.verifier_limits, Unset):
            verifier_limits = self.verifier_limits.to_dict()

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "currency": currency,
                "deadline_ms": deadline_ms,
                "reward_minor": reward_minor,
                "spec": spec,
                "title": title,
                "verifier": verifier,
            }
        )
        if description is not UNSET:
            field_dict["description"] = description
        if max_claims is not UNSET:
            field_dict["max_claims"] = max_claims
        if policy is not UNSET:
            field_dict["policy"] = policy
        if verifier_limits is not UNSET:
            field_dict["verifier_limits"] = verifier_limits

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.new_bounty_spec import NewBountySpec  # noqa: PLC0415
        from ..models.verifier_limits import VerifierLimits  # noqa: PLC0415

        d = dict(src_dict)
        currency = d.pop("currency")

        deadline_ms = d.pop("deadline_ms")

        reward_minor = d.pop("reward_minor")

        spec = NewBountySpec.from_dict(d.pop("spec"))

        title = d.pop("title")

        verifier = d.pop("verifier")

        description = d.pop("description", UNSET)

        def _parse_max_claims(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        max_claims = _parse_max_claims(d.pop("max_claims", UNSET))

        _policy = d.pop("policy", UNSET)
        policy: Policy | Unset
        if isinstance(_policy, Unset):
            policy = UNSET
        else:
            policy = check_policy(_policy)

        _verifier_limits = d.pop("verifier_limits", UNSET)
        verifier_limits: VerifierLimits | Unset
        if isinstance(_verifier_limits, Unset):
            verifier_limits = UNSET
        else:
            verifier_limits = VerifierLimits.from_dict(_verifier_limits)

        new_bounty = cls(
            currency=currency,
            deadline_ms=deadline_ms,
            reward_minor=reward_minor,
            spec=spec,
            title=title,
            verifier=verifier,
            description=description,
            max_claims=max_claims,
            policy=policy,
            verifier_limits=verifier_limits,
        )

        return new_bounty
