from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, TYPE_CHECKING

from attrs import define as _attrs_define

from ..types import UNSET, Unset

from typing import cast

if TYPE_CHECKING:
    from ..models.step_input_type_0 import StepInputType0


T = TypeVar("T", bound="Step")


@_attrs_define
class Step:
    """One step: a run of `agent`.

    Attributes:
        agent (str): The agent to run: a name or id of the tenant's agents, stored as the
            id.
        id (str): Unique in the workflow: 1-64 of `a-z 0-9 _ -`.
        after (list[str] | Unset): Steps that must complete first (ids of this workflow; no cycles).
        input_ (None | StepInputType0 | Unset): The run's input, a template over `{"input": <the workflow run's
            input>, "steps": {<id>: <output>}}`: any JSON, in which an object
            `{"$from": "<JSON pointer>"}` is replaced by the value at that
            pointer (null when absent), e.g. `{"$from": "/steps/fetch/items"}`.
            A pointer may only reach `/input` and the steps in `after`. Default:
            `{"input": ..., "steps": {<each step in after>: <its output>}}`.
        retries (int | Unset): Runs of this step tried again after one that did not complete
            (0-10, default 0).
        timeout_ms (int | None | Unset): An attempt not finished this long after it was queued counts as
            failed (1 s - 24 h; default: none beyond the run's own deadline).
    """

    agent: str
    id: str
    after: list[str] | Unset = UNSET
    input_: None | StepInputType0 | Unset = UNSET
    retries: int | Unset = UNSET
    timeout_ms: int | None | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        from ..models.step_input_type_0 import StepInputType0  # noqa: PLC0415

        agent = self.agent

        id = self.id

        after: list[str] | Unset = UNSET
        if not isinstance(self.after, Unset):
            after = self.after

        input_: dict[str, Any] | None | Unset
        if isinstance(self.input_, Unset):
            input_ = UNSET
        elif isinstance(self.input_, StepInputType0):
            input_ = self.input_.to_dict()
        else:
            input_ = self.input_

        retries = self.retries

        timeout_ms: int | None | Unset
        if isinstance(self.timeout_ms, Unset):
            timeout_ms = UNSET
        else:
            timeout_ms = self.timeout_ms

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "agent": agent,
                "id": id,
            }
        )
        if after is not UNSET:
            field_dict["after"] = after
        if input_ is not UNSET:
            field_dict["input"] = input_
        if retries is not UNSET:
            field_dict["retries"] = retries
        if timeout_ms is not UNSET:
            field_dict["timeout_ms"] = timeout_ms

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.step_input_type_0 import StepInputType0  # noqa: PLC0415

        d = dict(src_dict)
        agent = d.pop("agent")

        id = d.pop("id")

        after = cast(list[str], d.pop("after", UNSET))

        def _parse_input_(data: object) -> None | StepInputType0 | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                input_type_0 = StepInputType0.from_dict(data)

                return input_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | StepInputType0 | Unset, data)

        input_ = _parse_input_(d.pop("input", UNSET))

        retries = d.pop("retries", UNSET)

        def _parse_timeout_ms(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        timeout_ms = _parse_timeout_ms(d.pop("timeout_ms", UNSET))

        step = cls(
            agent=agent,
            id=id,
            after=after,
            input_=input_,
            retries=retries,
            timeout_ms=timeout_ms,
        )

        return step
