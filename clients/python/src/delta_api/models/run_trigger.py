from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from typing import cast


T = TypeVar("T", bound="RunTrigger")


@_attrs_define
class RunTrigger:
    """What started a run: kept with it, shown by `GET /v1/runs/{id}` and
    carried by its result webhook (`run.completed`, `run.failed`).

        Attributes:
            kind (str): `api` (`POST /v1/agents/{id}/runs`), `schedule`, `webhook` (an
                inbound webhook), `agent` (another agent's message) or
                `bounty_attempt`.
            id (None | str | Unset): The schedule (`sch_...`), inbound webhook (`whk_...`), message
                (`msg_...`, `GET /v1/agent-messages`) or attempt; none for `api`.
    """

    kind: str
    id: None | str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        kind = self.kind

        id: None | str | Unset
        if isinstance(self.id, Unset):
            id = UNSET
        else:
            id = self.id

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "kind": kind,
            }
        )
        if id is not UNSET:
            field_dict["id"] = id

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        kind = d.pop("kind")

        def _parse_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        id = _parse_id(d.pop("id", UNSET))

        run_trigger = cls(
            kind=kind,
            id=id,
        )

        run_trigger.additional_properties = d
        return run_trigger

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
