from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, TYPE_CHECKING

from attrs import define as _attrs_define

from ..types import UNSET, Unset

from ..models.channel import Channel
from ..models.channel import check_channel
from typing import cast

if TYPE_CHECKING:
    from ..models.http_grant import HttpGrant


T = TypeVar("T", bound="AgentGrants")


@_attrs_define
class AgentGrants:
    """What an agent may reach; everything defaults to nothing.

    Attributes:
        agents (list[str] | Unset): Agents of this tenant it may message (`delta:agent/agents`), by name
            or id; a message to any other is refused `not-allowed`. At most 256.
        channels (list[Channel] | Unset): Messaging channels it may use.
        http (HttpGrant | None | Unset):
        kv (bool | Unset): Whether it may keep durable key-value state between runs
            (`delta:agent/kv`; readable at `/v1/agents/{id}/kv`). Default false.
        models (list[str] | Unset): LLM models or aliases it may call.
        recipients (list[str] | Unset): Recipients it may reach (addresses, `*@domain`, E.164 numbers).
        templates (list[str] | Unset): Message templates (ids) it may use.
    """

    agents: list[str] | Unset = UNSET
    channels: list[Channel] | Unset = UNSET
    http: HttpGrant | None | Unset = UNSET
    kv: bool | Unset = UNSET
    models: list[str] | Unset = UNSET
    recipients: list[str] | Unset = UNSET
    templates: list[str] | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        from ..models.http_grant import HttpGrant  # noqa: PLC0415

        agents: list[str] | Unset = UNSET
        if not isinstance(self.agents, Unset):
            agents = self.agents

        channels: list[str] | Unset = UNSET
        if not isinstance(self.channels, Unset):
            channels = []
            for channels_item_data in self.channels:
                channels_item: str = channels_item_data
                channels.append(channels_item)

        http: dict[str, Any] | None | Unset
        if isinstance(self.http, Unset):
            http = UNSET
        elif isinstance(self.http, HttpGrant):
            http = self.http.to_dict()
        else:
            http = self.http

        kv = self.kv

        models: list[str] | Unset = UNSET
        if not isinstance(self.models, Unset):
            models = self.models

        recipients: list[str] | Unset = UNSET
        if not isinstance(self.recipients, Unset):
            recipients = self.recipients

        templates: list[str] | Unset = UNSET
        if not isinstance(self.templates, Unset):
            templates = self.templates

        field_dict: dict[str, Any] = {}

        field_dict.update({})
        if agents is not UNSET:
            field_dict["agents"] = agents
        if channels is not UNSET:
            field_dict["channels"] = channels
        if http is not UNSET:
            field_dict["http"] = http
        if kv is not UNSET:
            field_dict["kv"] = kv
        if models is not UNSET:
            field_dict["models"] = models
        if recipients is not UNSET:
            field_dict["recipients"] = recipients
        if templates is not UNSET:
            field_dict["templates"] = templates

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.http_grant import HttpGrant  # noqa: PLC0415

        d = dict(src_dict)
        agents = cast(list[str], d.pop("agents", UNSET))

        _channels = d.pop("channels", UNSET)
        channels: list[Channel] | Unset = UNSET
        if _channels is not UNSET:
            channels = []
            for channels_item_data in _channels:
                channels_item = check_channel(channels_item_data)

                channels.append(channels_item)

        def _parse_http(data: object) -> HttpGrant | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                http_type_1 = HttpGrant.from_dict(data)

                return http_type_1
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(HttpGrant | None | Unset, data)

        http = _parse_http(d.pop("http", UNSET))

        kv = d.pop("kv", UNSET)

        models = cast(list[str], d.pop("models", UNSET))

        recipients = cast(list[str], d.pop("recipients", UNSET))

        templates = cast(list[str], d.pop("templates", UNSET))

        agent_grants = cls(
            agents=agents,
            channels=channels,
            http=http,
            kv=kv,
            models=models,
            recipients=recipients,
            templates=templates,
        )

        return agent_grants
