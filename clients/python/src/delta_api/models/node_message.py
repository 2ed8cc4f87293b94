from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define


T = TypeVar("T", bound="NodeMessage")


@_attrs_define
class NodeMessage:
    """Body of `POST /v1/nodes/messages`.

    Attributes:
        agent_id (str): The sending agent (placed on the calling node).
        message (str): The message: JSON text.
        run_id (str): The sending run (its `task.run-id`).
        seq (int): The message's position in the run, from 0.
        to (str): The receiver's name or id, as the guest gave it.
    """

    agent_id: str
    message: str
    run_id: str
    seq: int
    to: str

    def to_dict(self) -> dict[str, Any]:
        agent_id = self.agent_id

        message = self.message

        run_id = self.run_id

        seq = self.seq

        to = self.to

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "agent_id": agent_id,
                "message": message,
                "run_id": run_id,
                "seq": seq,
                "to": to,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        agent_id = d.pop("agent_id")

        message = d.pop("message")

        run_id = d.pop("run_id")

        seq = d.pop("seq")

        to = d.pop("to")

        node_message = cls(
            agent_id=agent_id,
            message=message,
            run_id=run_id,
            seq=seq,
            to=to,
        )

        return node_message
