from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define


T = TypeVar("T", bound="MessageAdmission")


@_attrs_define
class MessageAdmission:
    """Body of `POST /v1/nodes/messages/admit`.

    Attributes:
        agent_id (str): The agent about to send (placed on the calling node).
        channel (str): `email` or `sms`.
    """

    agent_id: str
    channel: str

    def to_dict(self) -> dict[str, Any]:
        agent_id = self.agent_id

        channel = self.channel

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "agent_id": agent_id,
                "channel": channel,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        agent_id = d.pop("agent_id")

        channel = d.pop("channel")

        message_admission = cls(
            agent_id=agent_id,
            channel=channel,
        )

        return message_admission
