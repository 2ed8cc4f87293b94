from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define


T = TypeVar("T", bound="LeaseGiveBack")


@_attrs_define
class LeaseGiveBack:
    """Body of `POST /v1/nodes/leases/{lease_id}/return`.

    Attributes:
        node_id (str): The calling node.
        spent (int): Tokens spent against the lease (may exceed what it granted).
    """

    node_id: str
    spent: int

    def to_dict(self) -> dict[str, Any]:
        node_id = self.node_id

        spent = self.spent

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "node_id": node_id,
                "spent": spent,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        node_id = d.pop("node_id")

        spent = d.pop("spent")

        lease_give_back = cls(
            node_id=node_id,
            spent=spent,
        )

        return lease_give_back
