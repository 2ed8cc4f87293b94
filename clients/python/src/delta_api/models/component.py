from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field


T = TypeVar("T", bound="Component")


@_attrs_define
class Component:
    """A component as the tenant sees it.

    Attributes:
        created_at_ms (int): When this tenant first uploaded it.
        sha256 (str): sha256 of the bytes, hex: the component's name.
        size (int): Size, bytes.
        world (str): `unchecked` until a node validated it (at a deployment), then
            `agent` or `verifier`.
    """

    created_at_ms: int
    sha256: str
    size: int
    world: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        created_at_ms = self.created_at_ms

        sha256 = self.sha256

        size = self.size

        world = self.world

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "created_at_ms": created_at_ms,
                "sha256": sha256,
                "size": size,
                "world": world,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        created_at_ms = d.pop("created_at_ms")

        sha256 = d.pop("sha256")

        size = d.pop("size")

        world = d.pop("world")

        component = cls(
            created_at_ms=created_at_ms,
            sha256=sha256,
            size=size,
            world=world,
        )

        component.additional_properties = d
        return component

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
