from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

from ..types import UNSET, Unset

from ..models.event_type import check_event_type
from ..models.event_type import EventType
from typing import cast


T = TypeVar("T", bound="NewEndpoint")


@_attrs_define
class NewEndpoint:
    """A new endpoint.

    Attributes:
        event_types (list[EventType]): The events sent to it: at least one (a type named twice counts once).
        url (str): Where events are POSTed: `http` or `https`, no user or password. Its
            host must resolve to public addresses only (unless the operator set
            `allow_private_webhook_urls`).
        agent_ids (list[str] | Unset): Only `run.*` events of these agents (the tenant's own; an id that is
            not one is 422 `unknown_agent`). Empty (the default): every agent.
            Other event types are not filtered.
        description (str | Unset): A note for humans (at most 200 bytes).
        trigger_ids (list[str] | Unset): Only `run.*` events of runs started by these triggers: the tenant's
            schedules (`sch_...`) and inbound webhooks (`whk_...`; another id is
            422 `unknown_trigger`). Empty (the default): every run, API calls
            and bounty attempts included. With `agent_ids`, both must match.
    """

    event_types: list[EventType]
    url: str
    agent_ids: list[str] | Unset = UNSET
    description: str | Unset = UNSET
    trigger_ids: list[str] | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        event_types = []
        for event_types_item_data in self.event_types:
            event_types_item: str = event_types_item_data
            event_types.append(event_types_item)

        url = self.url

        agent_ids: list[str] | Unset = UNSET
        if not isinstance(self.agent_ids, Unset):
            agent_ids = self.agent_ids

        description = self.description

        trigger_ids: list[str] | Unset = UNSET
        if not isinstance(self.trigger_ids, Unset):
            trigger_ids = self.trigger_ids

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "event_types": event_types,
                "url": url,
            }
        )
        if agent_ids is not UNSET:
            field_dict["agent_ids"] = agent_ids
        if description is not UNSET:
            field_dict["description"] = description
        if trigger_ids is not UNSET:
            field_dict["trigger_ids"] = trigger_ids

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        event_types = []
        _event_types = d.pop("event_types")
        for event_types_item_data in _event_types:
            event_types_item = check_event_type(event_types_item_data)

            event_types.append(event_types_item)

        url = d.pop("url")

        agent_ids = cast(list[str], d.pop("agent_ids", UNSET))

        description = d.pop("description", UNSET)

        trigger_ids = cast(list[str], d.pop("trigger_ids", UNSET))

        new_endpoint = cls(
            event_types=event_types,
            url=url,
            agent_ids=agent_ids,
            description=description,
            trigger_ids=trigger_ids,
        )

        return new_endpoint
