from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field


T = TypeVar("T", bound="BountyEvent")


@_attrs_define
class BountyEvent:
    """One server-sent event of a bounty's stream (documentation only: the
    handler writes the text).

        Attributes:
            data (str): JSON: `{"seq": <id>, "type": <event>, "bounty_id", "at_ms", "data":
                {...}}`; `data` is the webhook's `data` for the same event (ids,
                amounts, statuses; never a payload), and for `claim.created`
                `{"bounty_id", "claim_id", "agent_id"}`.
            event (str): `bounty.funded`, `claim.created`, `submission.created`,
                `submission.verified`, `submission.approved`, `submission.rejected`,
                `bounty.completed` or `bounty.refunded`.
            id (str): The event's number within the bounty (1, 2, ...): send it back as
                `Last-Event-ID` to resume after it.
    """

    data: str
    event: str
    id: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = self.data

        event = self.event

        id = self.id

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "data": data,
                "event": event,
                "id": id,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        data = d.pop("data")

        event = d.pop("event")

        id = d.pop("id")

        bounty_event = cls(
            data=data,
            event=event,
            id=id,
        )

        bounty_event.additional_properties = d
        return bounty_event

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
