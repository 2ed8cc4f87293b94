from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, TYPE_CHECKING

from attrs import define as _attrs_define

from ..types import UNSET, Unset

from typing import cast

if TYPE_CHECKING:
    from ..models.definition_output_type_0 import DefinitionOutputType0
    from ..models.step import Step


T = TypeVar("T", bound="Definition")


@_attrs_define
class Definition:
    """A workflow: steps, each an agent run, ordered by `after`.

    Attributes:
        steps (list[Step]): 1-100 steps. A step starts when every step it names in `after` has
            completed; steps with nothing in common run at the same time
            (fan-out), a step after several waits for all (fan-in).
        output (DefinitionOutputType0 | None | Unset): The workflow's output, a template (see [`Step::input`]) over
            `{"input": ..., "steps": {<id>: <output>, ...}}`; default: that
            `steps` object.
        token_budget (int | None | Unset): Most tokens (LLM tokens and message tokens, as the runs' usage
            reports them) all of a run of this workflow may use; once its
            finished steps used more, it fails with `token_budget_exceeded` and
            starts no further step. None: no bound beyond the agents' budgets.
    """

    steps: list[Step]
    output: DefinitionOutputType0 | None | Unset = UNSET
    token_budget: int | None | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        from ..models.definition_output_type_0 import DefinitionOutputType0  # noqa: PLC0415

        steps = []
        for steps_item_data in self.steps:
            steps_item = steps_item_data.to_dict()
            steps.append(steps_item)

        output: dict[str, Any] | None | Unset
        if isinstance(self.output, Unset):
            output = UNSET
        elif isinstance(self.output, DefinitionOutputType0):
            output = self.output.to_dict()
        else:
            output = self.output

        token_budget: int | None | Unset
        if isinstance(self.token_budget, Unset):
            token_budget = UNSET
        else:
            token_budget = self.token_budget

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "steps": steps,
            }
        )
        if output is not UNSET:
            field_dict["output"] = output
        if token_budget is not UNSET:
            field_dict["token_budget"] = token_budget

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.definition_output_type_0 import DefinitionOutputType0  # noqa: PLC0415
        from ..models.step import Step  # noqa: PLC0415

        d = dict(src_dict)
        steps = []
        _steps = d.pop("steps")
        for steps_item_data in _steps:
            steps_item = Step.from_dict(steps_item_data)

            steps.append(steps_item)

        def _parse_output(data: object) -> DefinitionOutputType0 | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                output_type_0 = DefinitionOutputType0.from_dict(data)

                return output_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(DefinitionOutputType0 | None | Unset, data)

        output = _parse_output(d.pop("output", UNSET))

        def _parse_token_budget(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        token_budget = _parse_token_budget(d.pop("token_budget", UNSET))

        definition = cls(
            steps=steps,
            output=output,
            token_budget=token_budget,
        )

        return definition
