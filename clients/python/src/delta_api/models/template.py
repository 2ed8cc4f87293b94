from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, TYPE_CHECKING

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from ..models.channel import Channel
from ..models.channel import check_channel
from ..models.template_status import check_template_status
from ..models.template_status import TemplateStatus
from typing import cast

if TYPE_CHECKING:
    from ..models.template_variables import TemplateVariables


T = TypeVar("T", bound="Template")


@_attrs_define
class Template:
    """A message template.

    Attributes:
        body (str): Body template.
        channel (Channel): A messaging channel.
        created_at_ms (int): Created at.
        html (bool): Whether the body is HTML (variables are escaped; email only).
        id (str): `tpl_...`.
        name (str): What guests send as the template id; unique in the tenant.
        status (TemplateStatus): Where a template is in its review.
        tenant_id (str): Its tenant.
        updated_at_ms (int): Last changed at.
        variables (TemplateVariables): Variables a guest may pass, each with its longest value in
            characters.
        version (int): Bumped by every change of content; approvals name the version.
        approved_at_ms (int | None | Unset): When this version was approved.
        approved_by (None | str | Unset): Who approved this version.
        created_by (None | str | Unset): Who created it.
        rejected_at_ms (int | None | Unset): When this version was rejected.
        rejected_by (None | str | Unset): Who rejected this version.
        rejection_reason (None | str | Unset): Why it was rejected.
        subject (None | str | Unset): Subject template (email only).
        updated_by (None | str | Unset): Who changed it last (content or review).
    """

    body: str
    channel: Channel
    created_at_ms: int
    html: bool
    id: str
    name: str
    status: TemplateStatus
    tenant_id: str
    updated_at_ms: int
    variables: TemplateVariables
    version: int
    approved_at_ms: int | None | Unset = UNSET
    approved_by: None | str | Unset = UNSET
    created_by: None | str | Unset = UNSET
    rejected_at_ms: int | None | Unset = UNSET
    rejected_by: None | str | Unset = UNSET
    rejection_reason: None | str | Unset = UNSET
    subject: None | str | Unset = UNSET
    updated_by: None | str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        body = self.body

        channel: str = self.channel

        created_at_ms = self.created_at_ms

        html = self.html

        id = self.id

        name = self.name

        status: str = self.status

        tenant_id = self.tenant_id

        updated_at_ms = self.updated_at_ms

        variables = self.variables.to_dict()

        version = self.version

        approved_at_ms: int | None | Unset
        if isinstance(self.approved_at_ms, Unset):
            approved_at_ms = UNSET
        else:
            approved_at_ms = self.approved_at_ms

        approved_by: None | str | Unset
        if isinstance(self.approved_by, Unset):
            approved_by = UNSET
        else:
            approved_by = self.approved_by

        created_by: None | str | Unset
        if isinstance(self.created_by, Unset):
            created_by = UNSET
        else:
            created_by = self.created_by

        rejected_at_ms: int | None | Unset
        if isinstance(self.rejected_at_ms, Unset):
            rejected_at_ms = UNSET
        else:
            rejected_at_ms = self.rejected_at_ms

        rejected_by: None | str | Unset
        if isinstance(self.rejected_by, Unset):
            rejected_by = UNSET
        else:
            rejected_by = self.rejected_by

        rejection_reason: None | str | Unset
        if isinstance(self.rejection_reason, Unset):
            rejection_reason = UNSET
        else:
            rejection_reason = self.rejection_reason

        subject: None | str | Unset
        if isinstance(self.subject, Unset):
            subject = UNSET
        else:
            subject = self.subject

        updated_by: None | str | Unset
        if isinstance(self.updated_by, Unset):
            updated_by = UNSET
        else:
            updated_by = self.updated_by

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "body": body,
                "channel": channel,
                "created_at_ms": created_at_ms,
                "html": html,
                "id": id,
                "name": name,
                "status": status,
                "tenant_id": tenant_id,
                "updated_at_ms": updated_at_ms,
                "variables": variables,
                "version": version,
            }
        )
        if approved_at_ms is not UNSET:
            field_dict["approved_at_ms"] = approved_at_ms
        if approved_by is not UNSET:
            field_dict["approved_by"] = approved_by
        if created_by is not UNSET:
            field_dict["created_by"] = created_by
        if rejected_at_ms is not UNSET:
            field_dict["rejected_at_ms"] = rejected_at_ms
        if rejected_by is not UNSET:
            field_dict["rejected_by"] = rejected_by
        if rejection_reason is not UNSET:
            field_dict["rejection_reason"] = rejection_reason
        if subject is not UNSET:
            field_dict["subject"] = subject
        if updated_by is not UNSET:
            field_dict["updated_by"] = updated_by

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.template_variables import TemplateVariables  # noqa: PLC0415

        d = dict(src_dict)
        body = d.pop("body")

        channel = check_channel(d.pop("channel"))

        created_at_ms = d.pop("created_at_ms")

        html = d.pop("html")

        id = d.pop("id")

        name = d.pop("name")

        status = check_template_status(d.pop("status"))

        tenant_id = d.pop("tenant_id")

        updated_at_ms = d.pop("updated_at_ms")

        variables = TemplateVariables.from_dict(d.pop("variables"))

        version = d.pop("version")

        def _parse_approved_at_ms(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        approved_at_ms = _parse_approved_at_ms(d.pop("approved_at_ms", UNSET))

        def _parse_approved_by(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        approved_by = _parse_approved_by(d.pop("approved_by", UNSET))

        def _parse_created_by(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        created_by = _parse_created_by(d.pop("created_by", UNSET))

        def _parse_rejected_at_ms(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        rejected_at_ms = _parse_rejected_at_ms(d.pop("rejected_at_ms", UNSET))

        def _parse_rejected_by(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        rejected_by = _parse_rejected_by(d.pop("rejected_by", UNSET))

        def _parse_rejection_reason(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        rejection_reason = _parse_rejection_reason(d.pop("rejection_reason", UNSET))

        def _parse_subject(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        subject = _parse_subject(d.pop("subject", UNSET))

        def _parse_updated_by(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        updated_by = _parse_updated_by(d.pop("updated_by", UNSET))

        template = cls(
            body=body,
            channel=channel,
            created_at_ms=created_at_ms,
            html=html,
            id=id,
            name=name,
            status=status,
            tenant_id=tenant_id,
            updated_at_ms=updated_at_ms,
            variables=variables,
            version=version,
            approved_at_ms=approved_at_ms,
            approved_by=approved_by,
            created_by=created_by,
            rejected_at_ms=rejected_at_ms,
            rejected_by=rejected_by,
            rejection_reason=rejection_reason,
            subject=subject,
            updated_by=updated_by,
        )

        template.additional_properties = d
        return template

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
