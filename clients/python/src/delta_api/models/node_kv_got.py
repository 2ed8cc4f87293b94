from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, TYPE_CHECKING

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from typing import cast

if TYPE_CHECKING:
    from ..models.node_kv_entry import NodeKvEntry


T = TypeVar("T", bound="NodeKvGot")


@_attrs_define
class NodeKvGot:
    """Answer of `POST /v1/nodes/kv/get`.

    Attributes:
        entry (NodeKvEntry | None | Unset):
    """

    entry: NodeKvEntry | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from ..models.node_kv_entry import NodeKvEntry  # noqa: PLC0415

        entry: dict[str, Any] | None | Unset
        if isinstance(self.entry, Unset):
            entry = UNSET
        elif isinstance(self.entry, NodeKvEntry):
            entry = self.entry.to_dict()
        else:
            entry = self.entry

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({})
        if entry is not UNSET:
            field_dict["entry"] = entry

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.node_kv_entry import NodeKvEntry  # noqa: PLC0415

        d = dict(src_dict)

        def _parse_entry(data: object) -> NodeKvEntry | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                entry_type_1 = NodeKvEntry.from_dict(data)

                return entry_type_1
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(NodeKvEntry | None | Unset, data)

        entry = _parse_entry(d.pop("entry", UNSET))

        node_kv_got = cls(
            entry=entry,
        )

        node_kv_got.additional_properties = d
        return node_kv_got

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
