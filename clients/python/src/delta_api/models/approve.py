from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

from ..types import UNSET, Unset

from typing import cast


T = TypeVar("T", bound="Approve")


@_attrs_define
class Approve:
    """Body of `POST /v1/templates/{id}/approve` (optional).

    Attributes:
        version (int | None | Unset): Approve only if the template is still at this version (409
            `version_mismatch` otherwise).
    """

    version: int | None | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        version: int | None | Unset
        if isinstance(self.version, Unset):
            version = UNSET
        else:
            version = self.version

        field_dict: dict[str, Any] = {}

        field_dict.update({})
        if version is not UNSET:
            field_dict["version"] = version

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)

        def _parse_version(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        version = _parse_version(d.pop("version", UNSET))

        approve = cls(
            version=version,
        )

        return approve
