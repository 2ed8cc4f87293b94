from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field


T = TypeVar("T", bound="PageAgentMessageItemsItem")


@_attrs_define
class PageAgentMessageItemsItem:
    """A stored message, without its body (that is the receiver run's input).

    Attributes:
        bytes_ (int): Size of the message, bytes.
        created_at_ms (int): When it was accepted.
        depth (int): Length of the chain of messages that led to it (1: sent by a run no
            message started).
        from_agent_id (str): The sending agent.
        from_run_id (str): The sending run.
        id (str): `msg_...`.
        run_id (str): The receiver's run (`GET /v1/runs/{id}`: its status, its output).
        tenant_id (str): Its tenant.
        to_agent_id (str): The receiving agent.
    """

    bytes_: int
    created_at_ms: int
    depth: int
    from_agent_id: str
    from_run_id: str
    id: str
    run_id: str
    tenant_id: str
    to_agent_id: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        bytes_ = self.bytes_

        created_at_ms = self.created_at_ms

        depth = self.depth

        from_agent_id = self.from_agent_id

        from_run_id = self.from_run_id

        id = self.id

        run_id = self.run_id

        tenant_id = self.tenant_id

        to_agent_id = self.to_agent_id

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "bytes": bytes_,
                "created_at_ms": created_at_ms,
                "depth": depth,
                "from_agent_id": from_agent_id,
                "from_run_id": from_run_id,
                "id": id,
                "run_id": run_id,
                "tenant_id": tenant_id,
                "to_agent_id": to_agent_id,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        bytes_ = d.pop("bytes")

        created_at_ms = d.pop("created_at_ms")

        depth = d.pop("depth")

        from_agent_id = d.pop("from_agent_id")

        from_run_id = d.pop("from_run_id")

        id = d.pop("id")

        run_id = d.pop("run_id")

        tenant_id = d.pop("tenant_id")

        to_agent_id = d.pop("to_agent_id")

        page_agent_message_items_item = cls(
            bytes_=bytes_,
            created_at_ms=created_at_ms,
            depth=depth,
            from_agent_id=from_agent_id,
            from_run_id=from_run_id,
            id=id,
            run_id=run_id,
            tenant_id=tenant_id,
            to_agent_id=to_agent_id,
        )

        page_agent_message_items_item.additional_properties = d
        return page_agent_message_items_item

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
