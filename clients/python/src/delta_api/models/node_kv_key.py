from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define


T = TypeVar("T", bound="NodeKvKey")


@_attrs_define
class NodeKvKey:
    """Body of `POST /v1/nodes/kv/get` and `/v1/nodes/kv/delete`.

    Attributes:
        agent_id (str): The agent (placed on the calling node).
        key (str): The key.
    """

    agent_id: str
    key: str

    def to_dict(self) -> dict[str, Any]:
        agent_id = self.agent_id

        key = self.key

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "agent_id": agent_id,
                "key": key,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        agent_id = d.pop("agent_id")

        key = d.pop("key")

        node_kv_key = cls(
            agent_id=agent_id,
            key=key,
        )

        return node_kv_key
