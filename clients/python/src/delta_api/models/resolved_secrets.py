from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, TYPE_CHECKING

from attrs import define as _attrs_define
from attrs import field as _attrs_field


if TYPE_CHECKING:
    from ..models.resolved_secrets_values import ResolvedSecretsValues


T = TypeVar("T", bound="ResolvedSecrets")


@_attrs_define
class ResolvedSecrets:
    """Answer of `POST /v1/nodes/secrets/resolve`.

    Attributes:
        values (ResolvedSecretsValues): Name to value, for the names the tenant has (a missing name does not
            exist).
    """

    values: ResolvedSecretsValues
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        values = self.values.to_dict()

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "values": values,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.resolved_secrets_values import ResolvedSecretsValues  # noqa: PLC0415

        d = dict(src_dict)
        values = ResolvedSecretsValues.from_dict(d.pop("values"))

        resolved_secrets = cls(
            values=values,
        )

        resolved_secrets.additional_properties = d
        return resolved_secrets

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
