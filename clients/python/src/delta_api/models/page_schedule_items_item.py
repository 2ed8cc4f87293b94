from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from ..models.catch_up_name import CatchUpName
from ..models.catch_up_name import check_catch_up_name
from typing import cast


T = TypeVar("T", bound="PageScheduleItemsItem")


@_attrs_define
class PageScheduleItemsItem:
    """A schedule: runs of an agent at the ticks of a cron expression.

    Attributes:
        agent_id (str): The agent it runs.
        catch_up (CatchUpName): After downtime: `skip` the missed ticks, or `run_once` for all of them.
        created_at_ms (int): Created at.
        cron (str): Five fields: minute hour day-of-month month day-of-week.
        enabled (bool): Disabled schedules do not fire.
        id (str): `sch_...`.
        input_ (Any): Each run's input.
        jitter_secs (int): Each fire is delayed by up to this many seconds (the same delay on
            every replica).
        time_zone (str): IANA time zone the expression is read in.
        updated_at_ms (int): Last changed at.
        last_fire_at_ms (int | None | Unset): When it last fired.
        next_fire_at_ms (int | None | Unset): When it fires next (none: disabled, or it never fires again).
    """

    agent_id: str
    catch_up: CatchUpName
    created_at_ms: int
    cron: str
    enabled: bool
    id: str
    input_: Any
    jitter_secs: int
    time_zone: str
    updated_at_ms: int
    last_fire_at_ms: int | None | Unset = UNSET
    next_fire_at_ms: int | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        agent_id = self.agent_id

        catch_up: str = self.catch_up

        created_at_ms = self.created_at_ms

        cron = self.cron

        enabled = self.enabled

        id = self.id

        input_ = self.input_

        jitter_secs = self.jitter_secs

        time_zone = self.time_zone

        updated_at_ms = self.updated_at_ms

        last_fire_at_ms: int | None | Unset
        if isinstance(self.last_fire_at_ms, Unset):
            last_fire_at_ms = UNSET
        else:
            last_fire_at_ms = self.last_fire_at_ms

        next_fire_at_ms: int | None | Unset
        if isinstance(self.next_fire_at_ms, Unset):
            next_fire_at_ms = UNSET
        else:
            next_fire_at_ms = self.next_fire_at_ms

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "agent_id": agent_id,
                "catch_up": catch_up,
                "created_at_ms": created_at_ms,
                "cron": cron,
                "enabled": enabled,
                "id": id,
                "input": input_,
                "jitter_secs": jitter_secs,
                "time_zone": time_zone,
                "updated_at_ms": updated_at_ms,
            }
        )
        if last_fire_at_ms is not UNSET:
            field_dict["last_fire_at_ms"] = last_fire_at_ms
        if next_fire_at_ms is not UNSET:
            field_dict["next_fire_at_ms"] = next_fire_at_ms

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        agent_id = d.pop("agent_id")

        catch_up = check_catch_up_name(d.pop("catch_up"))

        created_at_ms = d.pop("created_at_ms")

        cron = d.pop("cron")

        enabled = d.pop("enabled")

        id = d.pop("id")

        input_ = d.pop("input")

        jitter_secs = d.pop("jitter_secs")

        time_zone = d.pop("time_zone")

        updated_at_ms = d.pop("updated_at_ms")

        def _parse_last_fire_at_ms(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        last_fire_at_ms = _parse_last_fire_at_ms(d.pop("last_fire_at_ms", UNSET))

        def _parse_next_fire_at_ms(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        next_fire_at_ms = _parse_next_fire_at_ms(d.pop("next_fire_at_ms", UNSET))

        page_schedule_items_item = cls(
            agent_id=agent_id,
            catch_up=catch_up,
            created_at_ms=created_at_ms,
            cron=cron,
            enabled=enabled,
            id=id,
            input_=input_,
            jitter_secs=jitter_secs,
            time_zone=time_zone,
            updated_at_ms=updated_at_ms,
            last_fire_at_ms=last_fire_at_ms,
            next_fire_at_ms=next_fire_at_ms,
        )

        page_schedule_items_item.additional_properties = d
        return page_schedule_items_item

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
