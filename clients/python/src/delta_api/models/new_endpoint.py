from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

from ..types import UNSET, Unset

from ..models.event_type import check_event_type
from ..models.event_type import EventType


T = TypeVar("T", bound="NewEndpoint")


@_attrs_define
class NewEndpoint:
    """A new endpoint.

    Attributes:
        event_types (list[EventType]): The events sent to it: at least one (a type named twice counts once).
        url (str): Where events are POSTed: `http` or `https`, no user or password. Its
            host must resolve to public addresses only (unless the operator set
            `allow_private_webhook_urls`).
        description (str | Unset): A note for humans (at most 200 bytes).
    """

    event_types: list[EventType]
    url: str
    description: str | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        event_types = []
        for event_types_item_data in self.event_types:
            event_types_item: str = event_types_item_data
            event_types.append(event_types_item)

        url = self.url

        description = self.description

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "event_types": event_types,
                "url": url,
            }
        )
        if description is not UNSET:
            field_dict["description"] = description

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

        description = d.pop("description", UNSET)

        new_endpoint = cls(
            event_types=event_types,
            url=url,
            description=description,
        )

        return new_endpoint
