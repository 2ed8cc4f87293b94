from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define


T = TypeVar("T", bound="NodeChange")


@_attrs_define
class NodeChange:
    """Body of `PATCH /v1/operator/nodes/{node_id}`.

    Attributes:
        url (str): Where the control plane reaches the node from now on (as in
            [`Enrolment::url`]).
    """

    url: str

    def to_dict(self) -> dict[str, Any]:
        url = self.url

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "url": url,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        url = d.pop("url")

        node_change = cls(
            url=url,
        )

        return node_change
