from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from ..models.event_type import check_event_type
from ..models.event_type import EventType
from typing import cast


T = TypeVar("T", bound="PageDeliveryItemsItem")


@_attrs_define
class PageDeliveryItemsItem:
    """One event's delivery to one endpoint.

    Attributes:
        attempts (int): Tries made.
        created_at_ms (int): Created.
        endpoint_id (str): The endpoint.
        event_type (EventType): What happened. The body's `type`.
        id (str): `whd_...`.
        message_id (str): The message: its `webhook-id`, the same on every try and replay.
        next_attempt_at_ms (int): When the next try is due (pending).
        status (str): `pending` (waiting for its next try), `delivered` (a 2xx) or `dead`
            (five tries failed; replay it with `POST .../replay`).
        updated_at_ms (int): Last changed.
        last_error (None | str | Unset): Why the last try failed.
        last_status (int | None | Unset): The last try's HTTP status, if it got one.
    """

    attempts: int
    created_at_ms: int
    endpoint_id: str
    event_type: EventType
    id: str
    message_id: str
    next_attempt_at_ms: int
    status: str
    updated_at_ms: int
    last_error: None | str | Unset = UNSET
    last_status: int | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        attempts = self.attempts

        created_at_ms = self.created_at_ms

        endpoint_id = self.endpoint_id

        event_type: str = self.event_type

        id = self.id

        message_id = self.message_id

        next_attempt_at_ms = self.next_attempt_at_ms

        status = self.status

        updated_at_ms = self.updated_at_ms

        last_error: None | str | Unset
        if isinstance(self.last_error, Unset):
            last_error = UNSET
        else:
            last_error = self.last_error

        last_status: int | None | Unset
        if isinstance(self.last_status, Unset):
            last_status = UNSET
        else:
            last_status = self.last_status

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "attempts": attempts,
                "created_at_ms": created_at_ms,
                "endpoint_id": endpoint_id,
                "event_type": event_type,
                "id": id,
                "message_id": message_id,
                "next_attempt_at_ms": next_attempt_at_ms,
                "status": status,
                "updated_at_ms": updated_at_ms,
            }
        )
        if last_error is not UNSET:
            field_dict["last_error"] = last_error
        if last_status is not UNSET:
            field_dict["last_status"] = last_status

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        attempts = d.pop("attempts")

        created_at_ms = d.pop("created_at_ms")

        endpoint_id = d.pop("endpoint_id")

        event_type = check_event_type(d.pop("event_type"))

        id = d.pop("id")

        message_id = d.pop("message_id")

        next_attempt_at_ms = d.pop("next_attempt_at_ms")

        status = d.pop("status")

        updated_at_ms = d.pop("updated_at_ms")

        def _parse_last_error(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        last_error = _parse_last_error(d.pop("last_error", UNSET))

        def _parse_last_status(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        last_status = _parse_last_status(d.pop("last_status", UNSET))

        page_delivery_items_item = cls(
            attempts=attempts,
            created_at_ms=created_at_ms,
            endpoint_id=endpoint_id,
            event_type=event_type,
            id=id,
            message_id=message_id,
            next_attempt_at_ms=next_attempt_at_ms,
            status=status,
            updated_at_ms=updated_at_ms,
            last_error=last_error,
            last_status=last_status,
        )

        page_delivery_items_item.additional_properties = d
        return page_delivery_items_item

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
