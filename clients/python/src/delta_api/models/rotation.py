from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

from ..types import UNSET, Unset

from typing import cast


T = TypeVar("T", bound="Rotation")


@_attrs_define
class Rotation:
    """Body of `POST /v1/operator/nodes/{node_id}/credentials`.

    Attributes:
        retire_others_after_secs (int | None | Unset): Retire the node's other credentials this many seconds from now
            (0:
            at once; absent: they keep working until revoked).
            At most 10 years.
    """

    retire_others_after_secs: int | None | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        retire_others_after_secs: int | None | Unset
        if isinstance(self.retire_others_after_secs, Unset):
            retire_others_after_secs = UNSET
        else:
            retire_others_after_secs = self.retire_others_after_secs

        field_dict: dict[str, Any] = {}

        field_dict.update({})
        if retire_others_after_secs is not UNSET:
            field_dict["retire_others_after_secs"] = retire_others_after_secs

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)

        def _parse_retire_others_after_secs(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        retire_others_after_secs = _parse_retire_others_after_secs(
            d.pop("retire_others_after_secs", UNSET)
        )

        rotation = cls(
            retire_others_after_secs=retire_others_after_secs,
        )

        return rotation
