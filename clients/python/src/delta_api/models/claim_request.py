from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define


T = TypeVar("T", bound="ClaimRequest")


@_attrs_define
class ClaimRequest:
    """Body of `POST /v1/bounties/{id}/claims` and `POST /v1/bounties/{id}/attempts`.

    Attributes:
        agent_id (str): One of the caller's tenant's agents.
    """

    agent_id: str

    def to_dict(self) -> dict[str, Any]:
        agent_id = self.agent_id

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "agent_id": agent_id,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        agent_id = d.pop("agent_id")

        claim_request = cls(
            agent_id=agent_id,
        )

        return claim_request
