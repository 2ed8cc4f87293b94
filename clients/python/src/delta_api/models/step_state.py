from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, TYPE_CHECKING

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from typing import cast

if TYPE_CHECKING:
    from ..models.step_state_output_type_0 import StepStateOutputType0


T = TypeVar("T", bound="StepState")


@_attrs_define
class StepState:
    """Where one step of a workflow run is.

    Attributes:
        attempts (int): Attempts so far.
        id (str): The step's id.
        status (str): `waiting`, `running`, `completed`, `failed` or `cancelled`.
        error (None | str | Unset): Why the last attempt failed.
        finished_at_ms (int | None | Unset): When it ended.
        output (None | StepStateOutputType0 | Unset): Its output, once `completed`.
        run_id (None | str | Unset): The current (or last) attempt's run (`GET /v1/runs/{id}`).
        started_at_ms (int | None | Unset): When the current attempt was queued.
    """

    attempts: int
    id: str
    status: str
    error: None | str | Unset = UNSET
    finished_at_ms: int | None | Unset = UNSET
    output: None | StepStateOutputType0 | Unset = UNSET
    run_id: None | str | Unset = UNSET
    started_at_ms: int | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from ..models.step_state_output_type_0 import StepStateOutputType0  # noqa: PLC0415

        attempts = self.attempts

        id = self.id

        status = self.status

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
        elif isinstance(self.output, StepStateOutputType0):
            output = self.output.to_dict()
        else:
            output = self.output

        run_id: None | str | Unset
        if isinstance(self.run_id, Unset):
            run_id = UNSET
        else:
            run_id = self.run_id

        started_at_ms: int | None | Unset
        if isinstance(self.started_at_ms, Unset):
            started_at_ms = UNSET
        else:
            started_at_ms = self.started_at_ms

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "attempts": attempts,
                "id": id,
                "status": status,
            }
        )
        if error is not UNSET:
            field_dict["error"] = error
        if finished_at_ms is not UNSET:
            field_dict["finished_at_ms"] = finished_at_ms
        if output is not UNSET:
            field_dict["output"] = output
        if run_id is not UNSET:
            field_dict["run_id"] = run_id
        if started_at_ms is not UNSET:
            field_dict["started_at_ms"] = started_at_ms

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.step_state_output_type_0 import StepStateOutputType0  # noqa: PLC0415

        d = dict(src_dict)
        attempts = d.pop("attempts")

        id = d.pop("id")

        status = d.pop("status")

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

        def _parse_output(data: object) -> None | StepStateOutputType0 | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                output_type_0 = StepStateOutputType0.from_dict(data)

                return output_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | StepStateOutputType0 | Unset, data)

        output = _parse_output(d.pop("output", UNSET))

        def _parse_run_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        run_id = _parse_run_id(d.pop("run_id", UNSET))

        def _parse_started_at_ms(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        started_at_ms = _parse_started_at_ms(d.pop("started_at_ms", UNSET))

        step_state = cls(
            attempts=attempts,
            id=id,
            status=status,
            error=error,
            finished_at_ms=finished_at_ms,
            output=output,
            run_id=run_id,
            started_at_ms=started_at_ms,
        )

        step_state.additional_properties = d
        return step_state

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
