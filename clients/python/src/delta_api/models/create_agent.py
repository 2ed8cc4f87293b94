from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, TYPE_CHECKING

from attrs import define as _attrs_define

from ..types import UNSET, Unset

from ..models.kind import check_kind
from ..models.kind import Kind
from ..models.node_loss import check_node_loss
from ..models.node_loss import NodeLoss
from typing import cast

if TYPE_CHECKING:
    from ..models.agent_grants import AgentGrants
    from ..models.limits import Limits


T = TypeVar("T", bound="CreateAgent")


@_attrs_define
class CreateAgent:
    """Body of `POST /v1/agents`.

    Attributes:
        component (str): sha256 of a component this tenant uploaded.
        kind (Kind): Main agent or bot (seed 000: a bot acts for a main agent).
        name (str): Unique in the tenant (409 `name_taken`): 1-128 characters, no
            control characters, no surrounding spaces.
        budget (int | None | Unset): Tokens carved at creation from the parent's budget (the creating
            user's pool for a main agent, the main agent's for a bot); default 0.
            409 `budget_exhausted` when the parent cannot cover it.
        grants (AgentGrants | None | Unset):
        limits (Limits | None | Unset):
        node_loss (NodeLoss | None | Unset):
        parent_agent_id (None | str | Unset): Required for a bot (a main agent of the tenant); absent for a main
            agent.
    """

    component: str
    kind: Kind
    name: str
    budget: int | None | Unset = UNSET
    grants: AgentGrants | None | Unset = UNSET
    limits: Limits | None | Unset = UNSET
    node_loss: NodeLoss | None | Unset = UNSET
    parent_agent_id: None | str | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        from ..models.agent_grants import AgentGrants  # noqa: PLC0415
        from ..models.limits import Limits  # noqa: PLC0415

        component = self.component

        kind: str = self.kind

        name = self.name

        budget: int | None | Unset
        if isinstance(self.budget, Unset):
            budget = UNSET
        else:
            budget = self.budget

        grants: dict[str, Any] | None | Unset
        if isinstance(self.grants, Unset):
            grants = UNSET
        elif isinstance(self.grants, AgentGrants):
            grants = self.grants.to_dict()
        else:
            grants = self.grants

        limits: dict[str, Any] | None | Unset
        if isinstance(self.limits, Unset):
            limits = UNSET
        elif isinstance(self.limits, Limits):
            limits = self.limits.to_dict()
        else:
            limits = self.limits

        node_loss: None | str | Unset
        if isinstance(self.node_loss, Unset):
            node_loss = UNSET
        elif isinstance(self.node_loss, str):
            node_loss = self.node_loss
        else:
            node_loss = self.node_loss

        parent_agent_id: None | str | Unset
        if isinstance(self.parent_agent_id, Unset):
            parent_agent_id = UNSET
        else:
            parent_agent_id = self.parent_agent_id

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "component": component,
                "kind": kind,
                "name": name,
            }
        )
        if budget is not UNSET:
            field_dict["budget"] = budget
        if grants is not UNSET:
            field_dict["grants"] = grants
        if limits is not UNSET:
            field_dict["limits"] = limits
        if node_loss is not UNSET:
            field_dict["node_loss"] = node_loss
        if parent_agent_id is not UNSET:
            field_dict["parent_agent_id"] = parent_agent_id

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.agent_grants import AgentGrants  # noqa: PLC0415
        from ..models.limits import Limits  # noqa: PLC0415

        d = dict(src_dict)
        component = d.pop("component")

        kind = check_kind(d.pop("kind"))

        name = d.pop("name")

        def _parse_budget(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        budget = _parse_budget(d.pop("budget", UNSET))

        def _parse_grants(data: object) -> AgentGrants | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                grants_type_1 = AgentGrants.from_dict(data)

                return grants_type_1
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(AgentGrants | None | Unset, data)

        grants = _parse_grants(d.pop("grants", UNSET))

        def _parse_limits(data: object) -> Limits | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                limits_type_1 = Limits.from_dict(data)

                return limits_type_1
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(Limits | None | Unset, data)

        limits = _parse_limits(d.pop("limits", UNSET))

        def _parse_node_loss(data: object) -> NodeLoss | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                node_loss_type_1 = check_node_loss(data)

                return node_loss_type_1
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(NodeLoss | None | Unset, data)

        node_loss = _parse_node_loss(d.pop("node_loss", UNSET))

        def _parse_parent_agent_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        parent_agent_id = _parse_parent_agent_id(d.pop("parent_agent_id", UNSET))

        create_agent = cls(
            component=component,
            kind=kind,
            name=name,
            budget=budget,
            grants=grants,
            limits=limits,
            node_loss=node_loss,
            parent_agent_id=parent_agent_id,
        )

        return create_agent
