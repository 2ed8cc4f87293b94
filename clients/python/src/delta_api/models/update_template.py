from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, TYPE_CHECKING

from attrs import define as _attrs_define

from ..types import UNSET, Unset

from ..models.channel import Channel
from ..models.channel import check_channel
from typing import cast

if TYPE_CHECKING:
    from ..models.update_template_variables_type_0 import UpdateTemplateVariablesType0


T = TypeVar("T", bound="UpdateTemplate")


@_attrs_define
class UpdateTemplate:
    """Body of `PATCH /v1/templates/{id}`: what is given is replaced. A change
    returns the template to `draft`.

        Attributes:
            body (None | str | Unset): New body.
            channel (Channel | None | Unset):
            html (bool | None | Unset): New HTML flag.
            name (None | str | Unset): New name.
            subject (None | str | Unset): New subject; `null` removes it (switching to SMS).
            variables (None | Unset | UpdateTemplateVariablesType0): New variables (the whole map).
    """

    body: None | str | Unset = UNSET
    channel: Channel | None | Unset = UNSET
    html: bool | None | Unset = UNSET
    name: None | str | Unset = UNSET
    subject: None | str | Unset = UNSET
    variables: None | Unset | UpdateTemplateVariablesType0 = UNSET

    def to_dict(self) -> dict[str, Any]:
        from ..models.update_template_variables_type_0 import (
            UpdateTemplateVariablesType0,
        )  # noqa: PLC0415

        body: None | str | Unset
        if isinstance(self.body, Unset):
            body = UNSET
        else:
            body = self.body

        channel: None | str | Unset
        if isinstance(self.channel, Unset):
            channel = UNSET
        elif isinstance(self.channel, str):
            channel = self.channel
        else:
            channel = self.channel

        html: bool | None | Unset
        if isinstance(self.html, Unset):
            html = UNSET
        else:
            html = self.html

        name: None | str | Unset
        if isinstance(self.name, Unset):
            name = UNSET
        else:
            name = self.name

        subject: None | str | Unset
        if isinstance(self.subject, Unset):
            subject = UNSET
        else:
            subject = self.subject

        variables: dict[str, Any] | None | Unset
        if isinstance(self.variables, Unset):
            variables = UNSET
        elif isinstance(self.variables, UpdateTemplateVariablesType0):
            variables = self.variables.to_dict()
        else:
            variables = self.variables

        field_dict: dict[str, Any] = {}

        field_dict.update({})
        if body is not UNSET:
            field_dict["body"] = body
        if channel is not UNSET:
            field_dict["channel"] = channel
        if html is not UNSET:
            field_dict["html"] = html
        if name is not UNSET:
            field_dict["name"] = name
        if subject is not UNSET:
            field_dict["subject"] = subject
        if variables is not UNSET:
            field_dict["variables"] = variables

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.update_template_variables_type_0 import (
            UpdateTemplateVariablesType0,
        )  # noqa: PLC0415

        d = dict(src_dict)

        def _parse_body(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        body = _parse_body(d.pop("body", UNSET))

        def _parse_channel(data: object) -> Channel | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                channel_type_1 = check_channel(data)

                return channel_type_1
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(Channel | None | Unset, data)

        channel = _parse_channel(d.pop("channel", UNSET))

        def _parse_html(data: object) -> bool | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(bool | None | Unset, data)

        html = _parse_html(d.pop("html", UNSET))

        def _parse_name(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        name = _parse_name(d.pop("name", UNSET))

        def _parse_subject(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        subject = _parse_subject(d.pop("subject", UNSET))

        def _parse_variables(
            data: object,
        ) -> None | Unset | UpdateTemplateVariablesType0:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                variables_type_0 = UpdateTemplateVariablesType0.from_dict(data)

                return variables_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | Unset | UpdateTemplateVariablesType0, data)

        variables = _parse_variables(d.pop("variables", UNSET))

        update_template = cls(
            body=body,
            channel=channel,
            html=html,
            name=name,
            subject=subject,
            variables=variables,
        )

        return update_template
