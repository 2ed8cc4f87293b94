from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, TYPE_CHECKING

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from typing import cast

if TYPE_CHECKING:
    from ..models.step_state import StepState
    from ..models.workflow_run_input import WorkflowRunInput
    from ..models.workflow_run_output_type_0 import WorkflowRunOutputType0


T = TypeVar("T", bound="WorkflowRun")


@_attrs_define
class WorkflowRun:
    """A run of a workflow.

    Attributes:
        created_at_ms (int): Started at.
        id (str): `wfr_...` (the `trigger.id` of its steps' runs).
        input_ (WorkflowRunInput): Its input.
        status (str): `running`, `completed`, `failed` or `cancelled`.
        tenant_id (str): Its tenant.
        tokens_used (int): Tokens its finished steps' runs used.
        workflow_id (str): The workflow.
        error (None | str | Unset): Why it failed (`step <id> failed: ...`, `token_budget_exceeded`) or
            was cancelled.
        finished_at_ms (int | None | Unset): Ended at.
        output (None | Unset | WorkflowRunOutputType0): Its output, once `completed`.
        steps (list[StepState] | None | Unset): Each step's state, in the definition's order (in answers about one
            run; absent in lists).
    """

    created_at_ms: int
    id: str
    input_: WorkflowRunInput
    status: str
    tenant_id: str
    tokens_used: int
    workflow_id: str
    error: None | str | Unset = UNSET
    finished_at_ms: int | None | Unset = UNSET
    output: None | Unset | WorkflowRunOutputType0 = UNSET
    steps: list[StepState] | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from ..models.workflow_run_output_type_0 import WorkflowRunOutputType0  # noqa: PLC0415

        created_at_ms = self.created_at_ms

        id = self.id

        input_ = self.input_.to_dict()

        status = self.status

        tenant_id = self.tenant_id

        tokens_used = self.tokens_used

        workflow_id = self.workflow_id

        error: None | str | Unset
        if isinstance(self.error, Unset):
            error = UNSET
        else:
            error = self.error

        finished_at_ms: int | None | Unset
        if isinstance(self.finished_at_ms, Unset):
            finished_at_ms = UNSET
        else:
            finished_at_ms = self.finished_at_ms

        output: dict[str, Any] | None | Unset
        if isinstance(self.output, Unset):
            output = UNSET
        elif isinstance(self.output, WorkflowRunOutputType0):
            output = self.output.to_dict()
        else:
            output = self.output

        steps: list[dict[str, Any]] | None | Unset
        if isinstance(self.steps, Unset):
            steps = UNSET
        elif isinstance(self.steps, list):
            steps = []
            for steps_type_0_item_data in self.steps:
                steps_type_0_item = steps_type_0_item_data.to_dict()
                steps.append(steps_type_0_item)

        else:
            steps = self.steps

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "created_at_ms": created_at_ms,
                "id": id,
                "input": input_,
                "status": status,
                "tenant_id": tenant_id,
                "tokens_used": tokens_used,
                "workflow_id": workflow_id,
            }
        )
        if error is not UNSET:
            field_dict["error"] = error
        if finished_at_ms is not UNSET:
            field_dict["finished_at_ms"] = finished_at_ms
        if output is not UNSET:
            field_dict["output"] = output
        if steps is not UNSET:
            field_dict["steps"] = steps

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.step_state import StepState  # noqa: PLC0415
        from ..models.workflow_run_input import WorkflowRunInput  # noqa: PLC0415
        from ..models.workflow_run_output_type_0 import WorkflowRunOutputType0  # noqa: PLC0415

        d = dict(src_dict)
        created_at_ms = d.pop("created_at_ms")

        id = d.pop("id")

        input_ = WorkflowRunInput.from_dict(d.pop("input"))

        status = d.pop("status")

        tenant_id = d.pop("tenant_id")

        tokens_used = d.pop("tokens_used")

        workflow_id = d.pop("workflow_id")

        def _parse_error(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        error = _parse_error(d.pop("error", UNSET))

        def _parse_finished_at_ms(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        finished_at_ms = _parse_finished_at_ms(d.pop("finished_at_ms", UNSET))

        def _parse_output(data: object) -> None | Unset | WorkflowRunOutputType0:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                output_type_0 = WorkflowRunOutputType0.from_dict(data)

                return output_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | Unset | WorkflowRunOutputType0, data)

        output = _parse_output(d.pop("output", UNSET))

        def _parse_steps(data: object) -> list[StepState] | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, list):
                    raise TypeError()
                steps_type_0 = []
                _steps_type_0 = data
                for steps_type_0_item_data in _steps_type_0:
                    steps_type_0_item = StepState.from_dict(steps_type_0_item_data)

                    steps_type_0.append(steps_type_0_item)

                return steps_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(list[StepState] | None | Unset, data)

        steps = _parse_steps(d.pop("steps", UNSET))

        workflow_run = cls(
            created_at_ms=created_at_ms,
            id=id,
            input_=input_,
            status=status,
            tenant_id=tenant_id,
            tokens_used=tokens_used,
            workflow_id=workflow_id,
            error=error,
            finished_at_ms=finished_at_ms,
            output=output,
            steps=steps,
        )

        workflow_run.additional_properties = d
        return workflow_run

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
