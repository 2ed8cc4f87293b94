from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from typing import cast


T = TypeVar("T", bound="PageMessageRecordItemsItem")


@_attrs_define
class PageMessageRecordItemsItem:
    """One message attempt.

    Attributes:
        agent_id (str): The agent that tried.
        at_ms (int): When the attempt ended (node clock).
        channel (str): `email` or `sms`.
        id (str): `<run_id>:<index in the run's log>`.
        node_id (str): The node that ran it.
        recipient (str): The recipient the guest named.
        run_id (str): Its run.
        status (str): `sent`, `refused` or `failed`.
        template_id (str): The template the guest named.
        tokens (int): Budget tokens charged.
        provider_id (None | str | Unset): The provider's id for the message (when sent).
        reason (None | str | Unset): The WIT send-error case (`template-not-approved`, `rate-limited`,
            ...); none when sent.
    """

    agent_id: str
    at_ms: int
    channel: str
    id: str
    node_id: str
    recipient: str
    run_id: str
    status: str
    template_id: str
    tokens: int
    provider_id: None | str | Unset = UNSET
    reason: None | str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        agent_id = self.agent_id

        at_ms = self.at_ms

        channel = self.channel

        id = self.id

        node_id = self.node_id

        recipient = self.recipient

        run_id = self.run_id

        status = self.status

        template_id = self.template_id

        tokens = self.tokens

        provider_id: None | str | Unset
        if isinstance(self.provider_id, Unset):
            provider_id = UNSET
        else:
            provider_id = self.provider_id

        reason: None | str | Unset
        if isinstance(self.reason, Unset):
            reason = UNSET
        else:
            reason = self.reason

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "agent_id": agent_id,
                "at_ms": at_ms,
                "channel": channel,
                "id": id,
                "node_id": node_id,
                "recipient": recipient,
                "run_id": run_id,
                "status": status,
                "template_id": template_id,
                "tokens": tokens,
            }
        )
        if provider_id is not UNSET:
            field_dict["provider_id"] = provider_id
        if reason is not UNSET:
            field_dict["reason"] = reason

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        agent_id = d.pop("agent_id")

        at_ms = d.pop("at_ms")

        channel = d.pop("channel")

        id = d.pop("id")

        node_id = d.pop("node_id")

        recipient = d.pop("recipient")

        run_id = d.pop("run_id")

        status = d.pop("status")

        template_id = d.pop("template_id")

        tokens = d.pop("tokens")

        def _parse_provider_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        provider_id = _parse_provider_id(d.pop("provider_id", UNSET))

        def _parse_reason(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        reason = _parse_reason(d.pop("reason", UNSET))

        page_message_record_items_item = cls(
            agent_id=agent_id,
            at_ms=at_ms,
            channel=channel,
            id=id,
            node_id=node_id,
            recipient=recipient,
            run_id=run_id,
            status=status,
            template_id=template_id,
            tokens=tokens,
            provider_id=provider_id,
            reason=reason,
        )

        page_message_record_items_item.additional_properties = d
        return page_message_record_items_item

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
