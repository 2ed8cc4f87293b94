from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, TYPE_CHECKING

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from typing import cast

if TYPE_CHECKING:
    from ..models.audit_entry_detail import AuditEntryDetail


T = TypeVar("T", bound="AuditEntry")


@_attrs_define
class AuditEntry:
    """One audit row as the API shows it.

    Attributes:
        action (str): What happened (`login`, `role_changed`, ...).
        at_ms (int): When, ms since the epoch.
        detail (AuditEntryDetail): Event-specific details.
        id (str): Row id.
        request_id (None | str | Unset): The request that caused it.
        user_id (None | str | Unset): Who acted (or, for a failed login, whose account was tried).
    """

    action: str
    at_ms: int
    detail: AuditEntryDetail
    id: str
    request_id: None | str | Unset = UNSET
    user_id: None | str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        action = self.action

        at_ms = self.at_ms

        detail = self.detail.to_dict()

        id = self.id

        request_id: None | str | Unset
        if isinstance(self.request_id, Unset):
            request_id = UNSET
        else:
            request_id = self.request_id

        user_id: None | str | Unset
        if isinstance(self.user_id, Unset):
            user_id = UNSET
        else:
            user_id = self.user_id

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "action": action,
                "at_ms": at_ms,
                "detail": detail,
                "id": id,
            }
        )
        if request_id is not UNSET:
            field_dict["request_id"] = request_id
        if user_id is not UNSET:
            field_dict["user_id"] = user_id

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.audit_entry_detail import AuditEntryDetail  # noqa: PLC0415

        d = dict(src_dict)
        action = d.pop("action")

        at_ms = d.pop("at_ms")

        detail = AuditEntryDetail.from_dict(d.pop("detail"))

        id = d.pop("id")

        def _parse_request_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        request_id = _parse_request_id(d.pop("request_id", UNSET))

        def _parse_user_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        user_id = _parse_user_id(d.pop("user_id", UNSET))

        audit_entry = cls(
            action=action,
            at_ms=at_ms,
            detail=detail,
            id=id,
            request_id=request_id,
            user_id=user_id,
        )

        audit_entry.additional_properties = d
        return audit_entry

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
