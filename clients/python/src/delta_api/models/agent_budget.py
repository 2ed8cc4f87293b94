from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from typing import cast


T = TypeVar("T", bound="AgentBudget")


@_attrs_define
class AgentBudget:
    """An agent's budget account.

    Attributes:
        agent_id (str): The agent.
        allocated (int): Tokens it holds this period.
        auto_approve_limit (int): A main agent's bots' requests up to this are approved at once.
        available (int): allocated - spent - leased.
        grant (int): What it gets back at each roll-over (a main agent's includes what
            its bots get).
        kind (str): `main` or `bot`.
        leased (int): Tokens out on nodes' leases.
        max_request (int): A main agent's bots may ask for at most this much at a time.
        period (str): `YYYY-MM` (UTC).
        spent (int): Tokens charged this period.
        user_id (str): The user whose budget it draws on.
        parent_agent_id (None | str | Unset): A bot's main agent.
    """

    agent_id: str
    allocated: int
    auto_approve_limit: int
    available: int
    grant: int
    kind: str
    leased: int
    max_request: int
    period: str
    spent: int
    user_id: str
    parent_agent_id: None | str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        agent_id = self.agent_id

        allocated = self.allocated

        auto_approve_limit = self.auto_approve_limit

        available = self.available

        grant = self.grant

        kind = self.kind

        leased = self.leased

        max_request = self.max_request

        period = self.period

        spent = self.spent

        user_id = self.user_id

        parent_agent_id: None | str | Unset
        if isinstance(self.parent_agent_id, Unset):
            parent_agent_id = UNSET
        else:
            parent_agent_id = self.parent_agent_id

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "agent_id": agent_id,
                "allocated": allocated,
                "auto_approve_limit": auto_approve_limit,
                "available": available,
                "grant": grant,
                "kind": kind,
                "leased": leased,
                "max_request": max_request,
                "period": period,
                "spent": spent,
                "user_id": user_id,
            }
        )
        if parent_agent_id is not UNSET:
            field_dict["parent_agent_id"] = parent_agent_id

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        agent_id = d.pop("agent_id")

        allocated = d.pop("allocated")

        auto_approve_limit = d.pop("auto_approve_limit")

        available = d.pop("available")

        grant = d.pop("grant")

        kind = d.pop("kind")

        leased = d.pop("leased")

        max_request = d.pop("max_request")

        period = d.pop("period")

        spent = d.pop("spent")

        user_id = d.pop("user_id")

        def _parse_parent_agent_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        parent_agent_id = _parse_parent_agent_id(d.pop("parent_agent_id", UNSET))

        agent_budget = cls(
            agent_id=agent_id,
            allocated=allocated,
            auto_approve_limit=auto_approve_limit,
            available=available,
            grant=grant,
            kind=kind,
            leased=leased,
            max_request=max_request,
            period=period,
            spent=spent,
            user_id=user_id,
            parent_agent_id=parent_agent_id,
        )

        agent_budget.additional_properties = d
        return agent_budget

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
