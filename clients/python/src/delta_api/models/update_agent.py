from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, TYPE_CHECKING

from attrs import define as _attrs_define

from ..types import UNSET, Unset

from ..models.node_loss import check_node_loss
from ..models.node_loss import NodeLoss
from typing import cast

if TYPE_CHECKING:
    from ..models.agent_grants import AgentGrants
    from ..models.limits import Limits


T = TypeVar("T", bound="UpdateAgent")


@_attrs_define
class UpdateAgent:
    """Body of `PATCH /v1/agents/{id}`: what is given is replaced, and the agent
    is redeployed on its node.

        Attributes:
            component (None | str | Unset): Another component of this tenant.
            grants (AgentGrants | None | Unset):
            limits (Limits | None | Unset):
            node_loss (NodeLoss | None | Unset):
    """

    component: None | str | Unset = UNSET
    grants: AgentGrants | None | Unset = UNSET
    limits: Limits | None | Unset = UNSET
    node_loss: NodeLoss | None | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        from ..models.agent_grants import AgentGrants  # noqa: PLC0415
        from ..models.limits import Limits  # noqa: PLC0415

        component: None | str | Unset
        if isinstance(self.component, Unset):
            component = UNSET
        else:
            component = self.component

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

        field_dict: dict[str, Any] = {}

        field_dict.update({})
        if component is not UNSET:
            field_dict["component"] = component
        if grants is not UNSET:
            field_dict["grants"] = grants
        if limits is not UNSET:
            field_dict["limits"] = limits
        if node_loss is not UNSET:
            field_dict["node_loss"] = node_loss

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.agent_grants import AgentGrants  # noqa: PLC0415
        from ..models.limits import Limits  # noqa: PLC0415

        d = dict(src_dict)

        def _parse_component(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        component = _parse_component(d.pop("component", UNSET))

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

        update_agent = cls(
            component=component,
            grants=grants,
            limits=limits,
            node_loss=node_loss,
        )

        return update_agent
