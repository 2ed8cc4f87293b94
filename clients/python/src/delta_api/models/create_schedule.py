from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

from ..types import UNSET, Unset

from ..models.catch_up_name import CatchUpName
from ..models.catch_up_name import check_catch_up_name


T = TypeVar("T", bound="CreateSchedule")


@_attrs_define
class CreateSchedule:
    """Body of `POST /v1/agents/{id}/schedules`.

    Attributes:
        cron (str): Five fields: minute hour day-of-month month day-of-week, one space
            apart (e.g. `*/15 9-17 * * MON-FRI`). 422 if croner refuses it or
            it never fires.
        catch_up (CatchUpName | Unset): After downtime: `skip` the missed ticks, or `run_once` for all of them.
        enabled (bool | Unset): Default true.
        input_ (Any | Unset): Each run's input: any JSON value (default `{}`).
        jitter_secs (int | Unset): Delay each fire by up to this many seconds (default 0).
        time_zone (str | Unset): IANA time zone (default `UTC`); 422 if unknown. Default: 'UTC'.
    """

    cron: str
    catch_up: CatchUpName | Unset = UNSET
    enabled: bool | Unset = UNSET
    input_: Any | Unset = UNSET
    jitter_secs: int | Unset = UNSET
    time_zone: str | Unset = "UTC"

    def to_dict(self) -> dict[str, Any]:
        cron = self.cron

        catch_up: str | Unset = UNSET
        if not isinstance(self.catch_up, Unset):
            catch_up = self.catch_up

        enabled = self.enabled

        input_ = self.input_

        jitter_secs = self.jitter_secs

        time_zone = self.time_zone

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "cron": cron,
            }
        )
        if catch_up is not UNSET:
            field_dict["catch_up"] = catch_up
        if enabled is not UNSET:
            field_dict["enabled"] = enabled
        if input_ is not UNSET:
            field_dict["input"] = input_
        if jitter_secs is not UNSET:
            field_dict["jitter_secs"] = jitter_secs
        if time_zone is not UNSET:
            field_dict["time_zone"] = time_zone

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        cron = d.pop("cron")

        _catch_up = d.pop("catch_up", UNSET)
        catch_up: CatchUpName | Unset
        if isinstance(_catch_up, Unset):
            catch_up = UNSET
        else:
            catch_up = check_catch_up_name(_catch_up)

        enabled = d.pop("enabled", UNSET)

        input_ = d.pop("input", UNSET)

        jitter_secs = d.pop("jitter_secs", UNSET)

        time_zone = d.pop("time_zone", UNSET)

        create_schedule = cls(
            cron=cron,
            catch_up=catch_up,
            enabled=enabled,
            input_=input_,
            jitter_secs=jitter_secs,
            time_zone=time_zone,
        )

        return create_schedule
