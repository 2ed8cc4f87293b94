from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, TYPE_CHECKING

from attrs import define as _attrs_define


if TYPE_CHECKING:
    from ..models.definition import Definition


T = TypeVar("T", bound="CreateWorkflow")


@_attrs_define
class CreateWorkflow:
    """Body of `POST /v1/workflows`.

    Attributes:
        definition (Definition): A workflow: steps, each an agent run, ordered by `after`.
        name (str): 1-128 characters, no control characters, unique in the tenant (409
            `name_taken`).
    """

    definition: Definition
    name: str

    def to_dict(self) -> dict[str, Any]:
        definition = self.definition.to_dict()

        name = self.name

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "definition": definition,
                "name": name,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.definition import Definition  # noqa: PLC0415

        d = dict(src_dict)
        definition = Definition.from_dict(d.pop("definition"))

        name = d.pop("name")

        create_workflow = cls(
            definition=definition,
            name=name,
        )

        return create_workflow
