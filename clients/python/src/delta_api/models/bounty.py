from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, TYPE_CHECKING

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from ..models.policy import check_policy
from ..models.policy import Policy
from typing import cast

if TYPE_CHECKING:
    from ..models.bounty_spec import BountySpec
    from ..models.payment import Payment
    from ..models.verifier_limits import VerifierLimits


T = TypeVar("T", bound="Bounty")


@_attrs_define
class Bounty:
    """A bounty.

    Attributes:
        claims_held (int): Claims held now (`active` or `submitted`).
        created_at_ms (int): Created.
        currency (str): ISO 4217 code.
        deadline_ms (int): Milliseconds since the epoch.
        description (str): Description.
        id (str): `bty_...`.
        max_claims (int): How many agents may hold a claim at once.
        policy (Policy): How submissions are approved.
        reward_minor (int): Minor units.
        spec (BountySpec): The specification.
        status (str): `draft`, `open` (funded), `completed`, `cancelled` or `expired`.
        tenant_id (str): The business's tenant.
        title (str): Title.
        updated_at_ms (int): Last changed.
        verifier (str): The verifier component's sha256.
        verifier_limits (VerifierLimits): The verifier's limits (each clamped by the node's maximums).
        approved_submission_id (None | str | Unset): The approved submission, once completed.
        payment (None | Payment | Unset):
    """

    claims_held: int
    created_at_ms: int
    currency: str
    deadline_ms: int
    description: str
    id: str
    max_claims: int
    policy: Policy
    reward_minor: int
    spec: BountySpec
    status: str
    tenant_id: str
    title: str
    updated_at_ms: int
    verifier: str
    verifier_limits: VerifierLimits
    approved_submission_id: None | str | Unset = UNSET
    payment: None | Payment | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from ..models.payment import Payment  # noqa: PLC0415

        claims_held = self.claims_held

        created_at_ms = self.created_at_ms

        currency = self.currency

        deadline_ms = self.deadline_ms

        description = self.description

        id = self.id

        max_claims = self.max_claims

        policy: str = self.policy

        reward_minor = self.reward_minor

        spec = self.spec.to_dict()

        status = self.status

        tenant_id = self.tenant_id

        title = self.title

        updated_at_ms = self.updated_at_ms

        verifier = self.verifier

        verifier_limits = self.verifier_limits.to_dict()

        approved_submission_id: None | str | Unset
        if isinstance(self.approved_submission_id, Unset):
            approved_submission_id = UNSET
        else:
            approved_submission_id = self.approved_submission_id

        payment: dict[str, Any] | None | Unset
        if isinstance(self.payment, Unset):
            payment = UNSET
        elif isinstance(self.payment, Payment):
            payment = self.payment.to_dict()
        else:
            payment = self.payment

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "claims_held": claims_held,
                "created_at_ms": created_at_ms,
                "currency": currency,
                "deadline_ms": deadline_ms,
                "description": description,
                "id": id,
                "max_claims": max_claims,
                "policy": policy,
                "reward_minor": reward_minor,
                "spec": spec,
                "status": status,
                "tenant_id": tenant_id,
                "title": title,
                "updated_at_ms": updated_at_ms,
                "verifier": verifier,
                "verifier_limits": verifier_limits,
            }
        )
        if approved_submission_id is not UNSET:
            field_dict["approved_submission_id"] = approved_submission_id
        if payment is not UNSET:
            field_dict["payment"] = payment

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.bounty_spec import BountySpec  # noqa: PLC0415
        from ..models.payment import Payment  # noqa: PLC0415
        from ..models.verifier_limits import VerifierLimits  # noqa: PLC0415

        d = dict(src_dict)
        claims_held = d.pop("claims_held")

        created_at_ms = d.pop("created_at_ms")

        currency = d.pop("currency")

        deadline_ms = d.pop("deadline_ms")

        description = d.pop("description")

        id = d.pop("id")

        max_claims = d.pop("max_claims")

        policy = check_policy(d.pop("policy"))

        reward_minor = d.pop("reward_minor")

        spec = BountySpec.from_dict(d.pop("spec"))

        status = d.pop("status")

        tenant_id = d.pop("tenant_id")

        title = d.pop("title")

        updated_at_ms = d.pop("updated_at_ms")

        verifier = d.pop("verifier")

        verifier_limits = VerifierLimits.from_dict(d.pop("verifier_limits"))

        def _parse_approved_submission_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        approved_submission_id = _parse_approved_submission_id(
            d.pop("approved_submission_id", UNSET)
        )

        def _parse_payment(data: object) -> None | Payment | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                payment_type_1 = Payment.from_dict(data)

                return payment_type_1
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | Payment | Unset, data)

        payment = _parse_payment(d.pop("payment", UNSET))

        bounty = cls(
            claims_held=claims_held,
            created_at_ms=created_at_ms,
            currency=currency,
            deadline_ms=deadline_ms,
            description=description,
            id=id,
            max_claims=max_claims,
            policy=policy,
            reward_minor=reward_minor,
            spec=spec,
            status=status,
            tenant_id=tenant_id,
            title=title,
            updated_at_ms=updated_at_ms,
            verifier=verifier,
            verifier_limits=verifier_limits,
            approved_submission_id=approved_submission_id,
            payment=payment,
        )

        bounty.additional_properties = d
        return bounty

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
