from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

from ..types import UNSET, Unset

from typing import cast


T = TypeVar("T", bound="HttpGrant")


@_attrs_define
class HttpGrant:
    """What an agent may reach over HTTP.

    Attributes:
        hosts (list[str] | Unset): Allow-list: `api.example.com` (exactly that host), `*.example.com`
            (its subdomains), `http://host:8080` (plain http, or a port other
            than the scheme's, must be named). At most 100.
        secrets (list[str] | Unset): Names of this tenant's secrets (`PUT /v1/secrets/{name}`) that its
            header values may use as `{{secret:NAME}}`. At most 50.
    """

    hosts: list[str] | Unset = UNSET
    secrets: list[str] | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        hosts: list[str] | Unset = UNSET
        if not isinstance(self.hosts, Unset):
            hosts = self.hosts

        secrets: list[str] | Unset = UNSET
        if not isinstance(self.secrets, Unset):
            secrets = self.secrets

        field_dict: dict[str, Any] = {}

        field_dict.update({})
        if hosts is not UNSET:
            field_dict["hosts"] = hosts
        if secrets is not UNSET:
            field_dict["secrets"] = secrets

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        hosts = cast(list[str], d.pop("hosts", UNSET))

        secrets = cast(list[str], d.pop("secrets", UNSET))

        http_grant = cls(
            hosts=hosts,
            secrets=secrets,
        )

        return http_grant
