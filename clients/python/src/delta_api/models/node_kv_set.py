from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

from ..types import UNSET, Unset

from typing import cast


T = TypeVar("T", bound="NodeKvSet")


@_attrs_define
class NodeKvSet:
    """Body of `POST /v1/nodes/kv/set`.

    Attributes:
        agent_id (str): The agent (placed on the calling node).
        key (str): The key.
        value_base64 (str): The value, base64.
        expected_version (int | None | Unset): Compare-and-swap: store only if the current version is this (0:
            only if the key does not exist).
    """

    agent_id: str
    key: str
    value_base64: str
    expected_version: int | None | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        agent_id = self.agent_id

        key = self.key

        value_base64 = self.value_base64

        expected_version: int | None | Unset
        if isinstance(self.expected_version, Unset):
            expected_version = UNSET
        else:
            expected_version = self.expected_version

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "agent_id": agent_id,
                "key": key,
                "value_base64": value_base64,
            }
        )
        if expected_version is not UNSET:
            field_dict["expected_version"] = expected_version

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        agent_id = d.pop("agent_id")

        key = d.pop("key")

        value_base64 = d.pop("value_base64")

        def _parse_expected_version(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        expected_version = _parse_expected_version(d.pop("expected_version", UNSET))

        node_kv_set = cls(
            agent_id=agent_id,
            key=key,
            value_base64=value_base64,
            expected_version=expected_version,
        )

        return node_kv_set
