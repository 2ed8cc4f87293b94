from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

from ..types import UNSET, Unset

from ..models.catch_up_name import CatchUpName
from ..models.catch_up_name import check_catch_up_name
from typing import cast


T = TypeVar("T", bound="PatchSchedule")


@_attrs_define
class PatchSchedule:
    """Body of `PATCH /v1/schedules/{id}`: what changes.

    Attributes:
        catch_up (CatchUpName | None | Unset):
        cron (None | str | Unset): As in creation.
        enabled (bool | None | Unset): As in creation.
        input_ (Any | Unset): As in creation (`null` or absent: unchanged).
        jitter_secs (int | None | Unset): As in creation.
        time_zone (None | str | Unset): As in creation.
    """

    catch_up: CatchUpName | None | Unset = UNSET
    cron: None | str | Unset = UNSET
    enabled: bool | None | Unset = UNSET
    input_: Any | Unset = UNSET
    jitter_secs: int | None | Unset = UNSET
    time_zone: None | str | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        catch_up: None | str | Unset
        if isinstance(self.catch_up, Unset):
            catch_up = UNSET
        elif isinstance(self.catch_up, str):
            catch_up = self.catch_up
        else:
            catch_up = self.catch_up

        cron: None | str | Unset
        if isinstance(self.cron, Unset):
            cron = UNSET
        else:
            cron = self.cron

        enabled: bool | None | Unset
        if isinstance(self.enabled, Unset):
            enabled = UNSET
        else:
            enabled = self.enabled

        input_ = self.input_

        jitter_secs: int | None | Unset
        if isinstance(self.jitter_secs, Unset):
            jitter_secs = UNSET
        else:
            jitter_secs = self.jitter_secs

        time_zone: None | str | Unset
        if isinstance(self.time_zone, Unset):
            time_zone = UNSET
        else:
            time_zone = self.time_zone

        field_dict: dict[str, Any] = {}

        field_dict.update({})
        if catch_up is not UNSET:
            field_dict["catch_up"] = catch_up
        if cron is not UNSET:
            field_dict["cron"] = cron
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

        def _parse_catch_up(data: object) -> CatchUpName | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                catch_up_type_1 = check_catch_up_name(data)

                return catch_up_type_1
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(CatchUpName | None | Unset, data)

        catch_up = _parse_catch_up(d.pop("catch_up", UNSET))

        def _parse_cron(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        cron = _parse_cron(d.pop("cron", UNSET))

        def _parse_enabled(data: object) -> bool | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(bool | None | Unset, data)

        enabled = _parse_enabled(d.pop("enabled", UNSET))

        input_ = d.pop("input", UNSET)

        def _parse_jitter_secs(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        jitter_secs = _parse_jitter_secs(d.pop("jitter_secs", UNSET))

        def _parse_time_zone(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        time_zone = _parse_time_zone(d.pop("time_zone", UNSET))

        patch_schedule = cls(
            catch_up=catch_up,
            cron=cron,
            enabled=enabled,
            input_=input_,
            jitter_secs=jitter_secs,
            time_zone=time_zone,
        )

        return patch_schedule
