from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, TYPE_CHECKING

from attrs import define as _attrs_define

from ..types import UNSET, Unset

from ..models.channel import Channel
from ..models.channel import check_channel
from typing import cast

if TYPE_CHECKING:
    from ..models.create_template_variables import CreateTemplateVariables


T = TypeVar("T", bound="CreateTemplate")


@_attrs_define
class CreateTemplate:
    """Body of `POST /v1/templates`.

    Attributes:
        body (str): The body template.
        channel (Channel): A messaging channel.
        name (str): What guests send as the template id: 1-64 of letters, digits, `_`,
            `-`, `.`, starting with a letter or digit, not `tpl_...`.
        html (bool | Unset): HTML body (email only). Default false.
        subject (None | str | Unset): Required for email, absent for SMS; a single line.
        variables (CreateTemplateVariables | Unset): Variable name -> longest value in characters (1-4096). Every
            variable the subject and body use must be here. Default none.
    """

    body: str
    channel: Channel
    name: str
    html: bool | Unset = UNSET
    subject: None | str | Unset = UNSET
    variables: CreateTemplateVariables | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        body = self.body

        channel: str = self.channel

        name = self.name

        html = self.html

        subject: None | str | Unset
        if isinstance(self.subject, Unset):
            subject = UNSET
        else:
            subject = self.subject

        variables: dict[str, Any] | Unset = UNSET
        if not isinstance(self.variables, Unset):
            variables = self.variables.to_dict()

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "body": body,
                "channel": channel,
                "name": name,
            }
        )
        if html is not UNSET:
            field_dict["html"] = html
        if subject is not UNSET:
            field_dict["subject"] = subject
        if variables is not UNSET:
            field_dict["variables"] = variables

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.create_template_variables import CreateTemplateVariables  # noqa: PLC0415

        d = dict(src_dict)
        body = d.pop("body")

        channel = check_channel(d.pop("channel"))

        name = d.pop("name")

        html = d.pop("html", UNSET)

        def _parse_subject(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        subject = _parse_subject(d.pop("subject", UNSET))

        _variables = d.pop("variables", UNSET)
        variables: CreateTemplateVariables | Unset
        if isinstance(_variables, Unset):
            variables = UNSET
        else:
            variables = CreateTemplateVariables.from_dict(_variables)

        create_template = cls(
            body=body,
            channel=channel,
            name=name,
            html=html,
            subject=subject,
            variables=variables,
        )

        return create_template
