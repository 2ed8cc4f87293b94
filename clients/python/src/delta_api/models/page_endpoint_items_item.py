from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from ..models.event_type import check_event_type
from ..models.event_type import EventType
from typing import cast


T = TypeVar("T", bound="PageEndpointItemsItem")


@_attrs_define
class PageEndpointItemsItem:
    """A registered endpoint (the secret is shown only at creation).

    Attributes:
        created_at_ms (int): Created.
        description (str): The note.
        event_types (list[EventType]): The events sent to it.
        id (str): `whep_...`.
        url (str): Where events are POSTed.
        agent_ids (list[str] | Unset): Only `run.*` events of these agents (empty: every agent).
        trigger_ids (list[str] | Unset): Only `run.*` events of runs these schedules or inbound webhooks
            started (empty: every run).
    """

    created_at_ms: int
    description: str
    event_types: list[EventType]
    id: str
    url: str
    agent_ids: list[str] | Unset = UNSET
    trigger_ids: list[str] | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        created_at_ms = self.created_at_ms

        description = self.description

        event_types = []
        for event_types_item_data in self.event_types:
            event_types_item: str = event_types_item_data
            event_types.append(event_types_item)

        id = self.id

        url = self.url

        agent_ids: list[str] | Unset = UNSET
        if not isinstance(self.agent_ids, Unset):
            agent_ids = self.agent_ids

        trigger_ids: list[str] | Unset = UNSET
        if not isinstance(self.trigger_ids, Unset):
            trigger_ids = self.trigger_ids

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "created_at_ms": created_at_ms,
                "description": description,
                "event_types": event_types,
                "id": id,
                "url": url,
            }
        )
        if agent_ids is not UNSET:
            field_dict["agent_ids"] = agent_ids
        if trigger_ids is not UNSET:
            field_dict["trigger_ids"] = trigger_ids

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        created_at_ms = d.pop("created_at_ms")

        description = d.pop("description")

        event_types = []
        _event_types = d.pop("event_types")
        for event_types_item_data in _event_types:
            event_types_item = check_event_type(event_types_item_data)

            event_types.append(event_types_item)

        id = d.pop("id")

        url = d.pop("url")

        agent_ids = cast(list[str], d.pop("agent_ids", UNSET))

        trigger_ids = cast(list[str], d.pop("trigger_ids", UNSET))

        page_endpoint_items_item = cls(
            created_at_ms=created_at_ms,
            description=description,
            event_types=event_types,
            id=id,
            url=url,
            agent_ids=agent_ids,
            trigger_ids=trigger_ids,
        )

        page_endpoint_items_item.additional_properties = d
        return page_endpoint_items_item

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
