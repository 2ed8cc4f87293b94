from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, TYPE_CHECKING

from attrs import define as _attrs_define
from attrs import field as _attrs_field


if TYPE_CHECKING:
    from ..models.agent_budget import AgentBudget


T = TypeVar("T", bound="UserBudget")


@_attrs_define
class UserBudget:
    """A user's budget.

    Attributes:
        allocated (int): What the user's agents hold, plus what deleted agents spent this
            period.
        main_agents (list[AgentBudget]): The user's main agents' balances.
        monthly_allocation (int): The tier's monthly allocation.
        period (str): `YYYY-MM` (UTC).
        pool (int): Unallocated: monthly_allocation - allocated.
        retired (int): Spent this period by agents since deleted (back at the roll-over).
        tier (str): Their tier (a key of the configuration's `[tiers]`).
        user_id (str): The user.
    """

    allocated: int
    main_agents: list[AgentBudget]
    monthly_allocation: int
    period: str
    pool: int
    retired: int
    tier: str
    user_id: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        allocated = self.allocated

        main_agents = []
        for main_agents_item_data in self.main_agents:
            main_agents_item = main_agents_item_data.to_dict()
            main_agents.append(main_agents_item)

        monthly_allocation = self.monthly_allocation

        period = self.period

        pool = self.pool

        retired = self.retired

        tier = self.tier

        user_id = self.user_id

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "allocated": allocated,
                "main_agents": main_agents,
                "monthly_allocation": monthly_allocation,
                "period": period,
                "pool": pool,
                "retired": retired,
                "tier": tier,
                "user_id": user_id,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.agent_budget import AgentBudget  # noqa: PLC0415

        d = dict(src_dict)
        allocated = d.pop("allocated")

        main_agents = []
        _main_agents = d.pop("main_agents")
        for main_agents_item_data in _main_agents:
            main_agents_item = AgentBudget.from_dict(main_agents_item_data)

            main_agents.append(main_agents_item)

        monthly_allocation = d.pop("monthly_allocation")

        period = d.pop("period")

        pool = d.pop("pool")

        retired = d.pop("retired")

        tier = d.pop("tier")

        user_id = d.pop("user_id")

        user_budget = cls(
            allocated=allocated,
            main_agents=main_agents,
            monthly_allocation=monthly_allocation,
            period=period,
            pool=pool,
            retired=retired,
            tier=tier,
            user_id=user_id,
        )

        user_budget.additional_properties = d
        return user_budget

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
