from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, TYPE_CHECKING

from attrs import define as _attrs_define
from attrs import field as _attrs_field


if TYPE_CHECKING:
    from ..models.definition import Definition


T = TypeVar("T", bound="Workflow")


@_attrs_define
class Workflow:
    """A stored workflow.

    Attributes:
        created_at_ms (int): Created at.
        definition (Definition): A workflow: steps, each an agent run, ordered by `after`.
        id (str): `wfl_...`.
        name (str): Unique in the tenant.
        tenant_id (str): Its tenant.
        updated_at_ms (int): Last changed.
    """

    created_at_ms: int
    definition: Definition
    id: str
    name: str
    tenant_id: str
    updated_at_ms: int
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        created_at_ms = self.created_at_ms

        definition = self.definition.to_dict()

        id = self.id

        name = self.name

        tenant_id = self.tenant_id

        updated_at_ms = self.updated_at_ms

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "created_at_ms": created_at_ms,
                "definition": definition,
                "id": id,
                "name": name,
                "tenant_id": tenant_id,
                "updated_at_ms": updated_at_ms,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.definition import Definition  # noqa: PLC0415

        d = dict(src_dict)
        created_at_ms = d.pop("created_at_ms")

        definition = Definition.from_dict(d.pop("definition"))

        id = d.pop("id")

        name = d.pop("name")

        tenant_id = d.pop("tenant_id")

        updated_at_ms = d.pop("updated_at_ms")

        workflow = cls(
            created_at_ms=created_at_ms,
            definition=definition,
            id=id,
            name=name,
            tenant_id=tenant_id,
            updated_at_ms=updated_at_ms,
        )

        workflow.additional_properties = d
        return workflow

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
