from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field


T = TypeVar("T", bound="AttemptStarted")


@_attrs_define
class AttemptStarted:
    """What `POST /v1/bounties/{id}/attempts` starts.

    Attributes:
        attempt_id (str): The attempt (`GET /v1/attempts/{id}`).
        claim_id (str): The claim it works under.
        run_id (str): The agent's run (`GET /v1/runs/{id}`).
    """

    attempt_id: str
    claim_id: str
    run_id: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        attempt_id = self.attempt_id

        claim_id = self.claim_id

        run_id = self.run_id

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "attempt_id": attempt_id,
                "claim_id": claim_id,
                "run_id": run_id,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        attempt_id = d.pop("attempt_id")

        claim_id = d.pop("claim_id")

        run_id = d.pop("run_id")

        attempt_started = cls(
            attempt_id=attempt_id,
            claim_id=claim_id,
            run_id=run_id,
        )

        attempt_started.additional_properties = d
        return attempt_started

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
