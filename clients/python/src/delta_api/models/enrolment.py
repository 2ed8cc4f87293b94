from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

from ..types import UNSET, Unset

from typing import cast


T = TypeVar("T", bound="Enrolment")


@_attrs_define
class Enrolment:
    """Body of `POST /v1/operator/nodes`.

    Attributes:
        node_id (str): The node's id (`node_id` in its configuration).
        url (None | str | Unset): Where the control plane reaches it (default: what its first
            heartbeat says): http(s), a host name or IPv4 address, no
            credentials; plain http only to loopback unless the operator allows it.
    """

    node_id: str
    url: None | str | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        node_id = self.node_id

        url: None | str | Unset
        if isinstance(self.url, Unset):
            url = UNSET
        else:
            url = self.url

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "node_id": node_id,
            }
        )
        if url is not UNSET:
            field_dict["url"] = url

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        node_id = d.pop("node_id")

        def _parse_url(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        url = _parse_url(d.pop("url", UNSET))

        enrolment = cls(
            node_id=node_id,
            url=url,
        )

        return enrolment
