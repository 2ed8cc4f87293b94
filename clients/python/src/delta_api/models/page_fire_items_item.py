from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from typing import cast


T = TypeVar("T", bound="PageFireItemsItem")


@_attrs_define
class PageFireItemsItem:
    """One fire of a schedule.

    Attributes:
        fired_at_ms (int): When it fired (the tick plus jitter, or later after downtime).
        id (str): `fire_...`.
        tick_ms (int): The cron tick it was for.
        error (None | str | Unset): Why no run started (`agent_paused: ...`, `node_unavailable: ...`).
        run_id (None | str | Unset): The run it started.
    """

    fired_at_ms: int
    id: str
    tick_ms: int
    error: None | str | Unset = UNSET
    run_id: None | str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        fired_at_ms = self.fired_at_ms

        id = self.id

        tick_ms = self.tick_ms

        error: None | str | Unset
        if isinstance(self.error, Unset):
            error = UNSET
        else:
            error = self.error

        run_id: None | str | Unset
        if isinstance(self.run_id, Unset):
            run_id = UNSET
        else:
            run_id = self.run_id

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "fired_at_ms": fired_at_ms,
                "id": id,
                "tick_ms": tick_ms,
            }
        )
        if error is not UNSET:
            field_dict["error"] = error
        if run_id is not UNSET:
            field_dict["run_id"] = run_id

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        fired_at_ms = d.pop("fired_at_ms")

        id = d.pop("id")

        tick_ms = d.pop("tick_ms")

        def _parse_error(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        error = _parse_error(d.pop("error", UNSET))

        def _parse_run_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        run_id = _parse_run_id(d.pop("run_id", UNSET))

        page_fire_items_item = cls(
            fired_at_ms=fired_at_ms,
            id=id,
            tick_ms=tick_ms,
            error=error,
            run_id=run_id,
        )

        page_fire_items_item.additional_properties = d
        return page_fire_items_item

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
