from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field


T = TypeVar("T", bound="WebhookWithSecret")


@_attrs_define
class WebhookWithSecret:
    """A webhook with its secret, answered once (creation, rotation).

    Attributes:
        agent_id (str): The agent it runs.
        created_at_ms (int): Created at.
        id (str): `whk_...`.
        rotated_at_ms (int): When its secret was last set.
        url (str): Where senders POST (relative to the control plane's address).
        secret (str): `whsec_...`: the HMAC-SHA256 key of `X-Delta-Signature`. Shown only
            here; rotate to get a new one.
    """

    agent_id: str
    created_at_ms: int
    id: str
    rotated_at_ms: int
    url: str
    secret: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        agent_id = self.agent_id

        created_at_ms = self.created_at_ms

        id = self.id

        rotated_at_ms = self.rotated_at_ms

        url = self.url

        secret = self.secret

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "agent_id": agent_id,
                "created_at_ms": created_at_ms,
                "id": id,
                "rotated_at_ms": rotated_at_ms,
                "url": url,
                "secret": secret,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        agent_id = d.pop("agent_id")

        created_at_ms = d.pop("created_at_ms")

        id = d.pop("id")

        rotated_at_ms = d.pop("rotated_at_ms")

        url = d.pop("url")

        secret = d.pop("secret")

        webhook_with_secret = cls(
            agent_id=agent_id,
            created_at_ms=created_at_ms,
            id=id,
            rotated_at_ms=rotated_at_ms,
            url=url,
            secret=secret,
        )

        webhook_with_secret.additional_properties = d
        return webhook_with_secret

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
