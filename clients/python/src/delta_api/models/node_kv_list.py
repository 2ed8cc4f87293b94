from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

from ..types import UNSET, Unset

from typing import cast


T = TypeVar("T", bound="NodeKvList")


@_attrs_define
class NodeKvList:
    """Body of `POST /v1/nodes/kv/list`.

    Attributes:
        agent_id (str): The agent (placed on the calling node).
        cursor (None | str | Unset): The previous page's `next_cursor`.
        limit (int | Unset): Keys per page (0: 100; at most 1000).
        prefix (str | Unset): Keys starting with this (default: all).
    """

    agent_id: str
    cursor: None | str | Unset = UNSET
    limit: int | Unset = UNSET
    prefix: str | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        agent_id = self.agent_id

        cursor: None | str | Unset
        if isinstance(self.cursor, Unset):
            cursor = UNSET
        else:
            cursor = self.cursor

        limit = self.limit

        prefix = self.prefix

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "agent_id": agent_id,
            }
        )
        if cursor is not UNSET:
            field_dict["cursor"] = cursor
        if limit is not UNSET:
            field_dict["limit"] = limit
        if prefix is not UNSET:
            field_dict["prefix"] = prefix

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        agent_id = d.pop("agent_id")

        def _parse_cursor(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        cursor = _parse_cursor(d.pop("cursor", UNSET))

        limit = d.pop("limit", UNSET)

        prefix = d.pop("prefix", UNSET)

        node_kv_list = cls(
            agent_id=agent_id,
            cursor=cursor,
            limit=limit,
            prefix=prefix,
        )

        return node_kv_list
