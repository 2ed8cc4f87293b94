from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

from ..types import UNSET, Unset

from typing import cast


T = TypeVar("T", bound="SetAgentBudget")


@_attrs_define
class SetAgentBudget:
    """Body of `PUT /v1/agents/{id}/budget`; what is absent is unchanged.

    Attributes:
        allocated (int | None | Unset): The agent's allocation (and per-period grant): the difference moves
            from or to its parent (the user's pool, or the bot's main agent).
        auto_approve_limit (int | None | Unset): A main agent's: its bots' requests up to this are approved at once.
        max_request (int | None | Unset): A main agent's: its bots may ask for at most this much at a time.
    """

    allocated: int | None | Unset = UNSET
    auto_approve_limit: int | None | Unset = UNSET
    max_request: int | None | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        allocated: int | None | Unset
        if isinstance(self.allocated, Unset):
            allocated = UNSET
        else:
            allocated = self.allocated

        auto_approve_limit: int | None | Unset
        if isinstance(self.auto_approve_limit, Unset):
            auto_approve_limit = UNSET
        else:
            auto_approve_limit = self.auto_approve_limit

        max_request: int | None | Unset
        if isinstance(self.max_request, Unset):
            max_request = UNSET
        else:
            max_request = self.max_request

        field_dict: dict[str, Any] = {}

        field_dict.update({})
        if allocated is not UNSET:
            field_dict["allocated"] = allocated
        if auto_approve_limit is not UNSET:
            field_dict["auto_approve_limit"] = auto_approve_limit
        if max_request is not UNSET:
            field_dict["max_request"] = max_request

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)

        def _parse_allocated(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        allocated = _parse_allocated(d.pop("allocated", UNSET))

        def _parse_auto_approve_limit(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        auto_approve_limit = _parse_auto_approve_limit(
            d.pop("auto_approve_limit", UNSET)
        )

        def _parse_max_request(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        max_request = _parse_max_request(d.pop("max_request", UNSET))

        set_agent_budget = cls(
            allocated=allocated,
            auto_approve_limit=auto_approve_limit,
            max_request=max_request,
        )

        return set_agent_budget
