from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define


from typing import cast


T = TypeVar("T", bound="SetRecipients")


@_attrs_define
class SetRecipients:
    """Body of `PUT /v1/agents/{id}/recipients`.

    Attributes:
        recipients (list[str]): The whole list (duplicates are dropped; at most 256 entries).
    """

    recipients: list[str]

    def to_dict(self) -> dict[str, Any]:
        recipients = self.recipients

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "recipients": recipients,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        recipients = cast(list[str], d.pop("recipients"))

        set_recipients = cls(
            recipients=recipients,
        )

        return set_recipients
