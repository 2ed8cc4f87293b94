from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, TYPE_CHECKING

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from ..models.reason import check_reason
from ..models.reason import Reason
from typing import cast

if TYPE_CHECKING:
    from ..models.deployment_limits import DeploymentLimits


T = TypeVar("T", bound="Deployment")


@_attrs_define
class Deployment:
    """One deployment.

    Attributes:
        agent_id (str): The agent.
        at_ms (int): When, ms since the epoch.
        component (str): sha256 of the component deployed.
        id (str): `dep_...`.
        limits (DeploymentLimits): The limits it was deployed with.
        reason (Reason): Why a deployment happened.
        node_id (None | str | Unset): The node it went to (none: no node was up to take it).
        request_id (None | str | Unset): The request that did it.
        user_id (None | str | Unset): Who did it (none: the monitor).
    """

    agent_id: str
    at_ms: int
    component: str
    id: str
    limits: DeploymentLimits
    reason: Reason
    node_id: None | str | Unset = UNSET
    request_id: None | str | Unset = UNSET
    user_id: None | str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        agent_id = self.agent_id

        at_ms = self.at_ms

        component = self.component

        id = self.id

        limits = self.limits.to_dict()

        reason: str = self.reason

        node_id: None | str | Unset
        if isinstance(self.node_id, Unset):
            node_id = UNSET
        else:
            node_id = self.node_id

        request_id: None | str | Unset
        if isinstance(self.request_id, Unset):
            request_id = UNSET
        else:
            request_id = self.request_id

        user_id: None | str | Unset
        if isinstance(self.user_id, Unset):
            user_id = UNSET
        else:
            user_id = self.user_id

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "agent_id": agent_id,
                "at_ms": at_ms,
                "component": component,
                "id": id,
                "limits": limits,
                "reason": reason,
            }
        )
        if node_id is not UNSET:
            field_dict["node_id"] = node_id
        if request_id is not UNSET:
            field_dict["request_id"] = request_id
        if user_id is not UNSET:
            field_dict["user_id"] = user_id

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.deployment_limits import DeploymentLimits  # noqa: PLC0415

        d = dict(src_dict)
        agent_id = d.pop("agent_id")

        at_ms = d.pop("at_ms")

        component = d.pop("component")

        id = d.pop("id")

        limits = DeploymentLimits.from_dict(d.pop("limits"))

        reason = check_reason(d.pop("reason"))

        def _parse_node_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        node_id = _parse_node_id(d.pop("node_id", UNSET))

        def _parse_request_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        request_id = _parse_request_id(d.pop("request_id", UNSET))

        def _parse_user_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        user_id = _parse_user_id(d.pop("user_id", UNSET))

        deployment = cls(
            agent_id=agent_id,
            at_ms=at_ms,
            component=component,
            id=id,
            limits=limits,
            reason=reason,
            node_id=node_id,
            request_id=request_id,
            user_id=user_id,
        )

        deployment.additional_properties = d
        return deployment

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
