from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define


from typing import cast


T = TypeVar("T", bound="ResolveSecrets")


@_attrs_define
class ResolveSecrets:
    """Body of `POST /v1/nodes/secrets/resolve`.

    Attributes:
        agent_id (str): The agent making an HTTP call (placed on the calling node).
        names (list[str]): Secret names its request uses; each must be in its `http.secrets`
            grant. At most 50.
    """

    agent_id: str
    names: list[str]

    def to_dict(self) -> dict[str, Any]:
        agent_id = self.agent_id

        names = self.names

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "agent_id": agent_id,
                "names": names,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        agent_id = d.pop("agent_id")

        names = cast(list[str], d.pop("names"))

        resolve_secrets = cls(
            agent_id=agent_id,
            names=names,
        )

        return resolve_secrets
