from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, TYPE_CHECKING

from attrs import define as _attrs_define

from ..types import UNSET, Unset


if TYPE_CHECKING:
    from ..models.start_workflow_input import StartWorkflowInput


T = TypeVar("T", bound="StartWorkflow")


@_attrs_define
class StartWorkflow:
    """Body of `POST /v1/workflows/{id}/runs`.

    Attributes:
        input_ (StartWorkflowInput | Unset): The workflow run's input (any JSON; default `{}`), `/input` in the
            steps' templates.
    """

    input_: StartWorkflowInput | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        input_: dict[str, Any] | Unset = UNSET
        if not isinstance(self.input_, Unset):
            input_ = self.input_.to_dict()

        field_dict: dict[str, Any] = {}

        field_dict.update({})
        if input_ is not UNSET:
            field_dict["input"] = input_

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.start_workflow_input import StartWorkflowInput  # noqa: PLC0415

        d = dict(src_dict)
        _input_ = d.pop("input", UNSET)
        input_: StartWorkflowInput | Unset
        if isinstance(_input_, Unset):
            input_ = UNSET
        else:
            input_ = StartWorkflowInput.from_dict(_input_)

        start_workflow = cls(
            input_=input_,
        )

        return start_workflow
