from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

from ..types import UNSET, Unset

from typing import cast


T = TypeVar("T", bound="Limits")


@_attrs_define
class Limits:
    """Per-run limits; each is clamped by the node's maximums, unset takes the
    node's default.

        Attributes:
            fuel (int | None | Unset): Fuel per run.
            memory_bytes (int | None | Unset): Linear memory cap per run, bytes.
            timeout_ms (int | None | Unset): Wall-clock deadline per run, milliseconds.
    """

    fuel: int | None | Unset = UNSET
    memory_bytes: int | None | Unset = UNSET
    timeout_ms: int | None | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        fuel: int | None | Unset
        if isinstance(self.fuel, Unset):
            fuel = UNSET
        else:
            fuel = self.fuel

        memory_bytes: int | None | Unset
        if isinstance(self.memory_bytes, Unset):
            memory_bytes = UNSET
        else:
            memory_bytes = self.memory_bytes

        timeout_ms: int | None | Unset
        if isinstance(self.timeout_ms, Unset):
            timeout_ms = UNSET
        else:
            timeout_ms = self.timeout_ms

        field_dict: dict[str, Any] = {}

        field_dict.update({})
        if fuel is not UNSET:
            field_dict["fuel"] = fuel
        if memory_bytes is not UNSET:
            field_dict["memory_bytes"] = memory_bytes
        if timeout_ms is not UNSET:
            field_dict["timeout_ms"] = timeout_ms

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)

        def _parse_fuel(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        fuel = _parse_fuel(d.pop("fuel", UNSET))

        def _parse_memory_bytes(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        memory_bytes = _parse_memory_bytes(d.pop("memory_bytes", UNSET))

        def _parse_timeout_ms(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        timeout_ms = _parse_timeout_ms(d.pop("timeout_ms", UNSET))

        limits = cls(
            fuel=fuel,
            memory_bytes=memory_bytes,
            timeout_ms=timeout_ms,
        )

        return limits
