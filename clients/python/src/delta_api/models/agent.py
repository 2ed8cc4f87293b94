from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, TYPE_CHECKING

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from ..models.kind import check_kind
from ..models.kind import Kind
from ..models.node_loss import check_node_loss
from ..models.node_loss import NodeLoss
from typing import cast

if TYPE_CHECKING:
    from ..models.agent_grants import AgentGrants
    from ..models.limits import Limits


T = TypeVar("T", bound="Agent")


@_attrs_define
class Agent:
    """An agent.

    Attributes:
        component (str): Component sha256.
        created_at_ms (int): Created at.
        grants (AgentGrants): What an agent may reach; everything defaults to nothing.
        id (str): `agt_...`.
        kind (Kind): Main agent or bot (seed 000: a bot acts for a main agent).
        limits (Limits): Per-run limits; each is clamped by the node's maximums, unset takes the
            node's default.
        name (str): Unique in the tenant.
        node_loss (NodeLoss): What becomes of an agent's unfinished runs when their node is lost
            (stops heart-beating): see `crate::dispatch::requeue`.
        paused (bool): Paused agents take no new runs (409 `agent_paused`).
        tenant_id (str): Its tenant.
        updated_at_ms (int): Last changed (including moves between nodes).
        node_id (None | str | Unset): The node hosting it.
        parent_agent_id (None | str | Unset): A bot's main agent.
    """

    component: str
    created_at_ms: int
    grants: AgentGrants
    id: str
    kind: Kind
    limits: Limits
    name: str
    node_loss: NodeLoss
    paused: bool
    tenant_id: str
    updated_at_ms: int
    node_id: None | str | Unset = UNSET
    parent_agent_id: None | str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        component = self.component

        created_at_ms = self.created_at_ms

        grants = self.grants.to_dict()

        id = self.id

        kind: str = self.kind

        limits = self.limits.to_dict()

        name = self.name

        node_loss: str = self.node_loss

        paused = self.paused

        tenant_id = self.tenant_id

        updated_at_ms = self.updated_at_ms

        node_id: None | str | Unset
        if isinstance(self.node_id, Unset):
            node_id = UNSET
        else:
            node_id = self.node_id

        parent_agent_id: None | str | Unset
        if isinstance(self.parent_agent_id, Unset):
            parent_agent_id = UNSET
        else:
            parent_agent_id = self.parent_agent_id

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "component": component,
                "created_at_ms": created_at_ms,
                "grants": grants,
                "id": id,
                "kind": kind,
                "limits": limits,
                "name": name,
                "node_loss": node_loss,
                "paused": paused,
                "tenant_id": tenant_id,
                "updated_at_ms": updated_at_ms,
            }
        )
        if node_id is not UNSET:
            field_dict["node_id"] = node_id
        if parent_agent_id is not UNSET:
            field_dict["parent_agent_id"] = parent_agent_id

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.agent_grants import AgentGrants  # noqa: PLC0415
        from ..models.limits import Limits  # noqa: PLC0415

        d = dict(src_dict)
        component = d.pop("component")

        created_at_ms = d.pop("created_at_ms")

        grants = AgentGrants.from_dict(d.pop("grants"))

        id = d.pop("id")

        kind = check_kind(d.pop("kind"))

        limits = Limits.from_dict(d.pop("limits"))

        name = d.pop("name")

        node_loss = check_node_loss(d.pop("node_loss"))

        paused = d.pop("paused")

        tenant_id = d.pop("tenant_id")

        updated_at_ms = d.pop("updated_at_ms")

        def _parse_node_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        node_id = _parse_node_id(d.pop("node_id", UNSET))

        def _parse_parent_agent_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        parent_agent_id = _parse_parent_agent_id(d.pop("parent_agent_id", UNSET))

        agent = cls(
            component=component,
            created_at_ms=created_at_ms,
            grants=grants,
            id=id,
            kind=kind,
            limits=limits,
            name=name,
            node_loss=node_loss,
            paused=paused,
            tenant_id=tenant_id,
            updated_at_ms=updated_at_ms,
            node_id=node_id,
            parent_agent_id=parent_agent_id,
        )

        agent.additional_properties = d
        return agent

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
