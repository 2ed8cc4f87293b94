from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, TYPE_CHECKING

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from typing import cast

if TYPE_CHECKING:
    from ..models.page_run_items_item_logs_type_0_item import (
        PageRunItemsItemLogsType0Item,
    )
    from ..models.page_run_items_item_outcome_type_0 import PageRunItemsItemOutcomeType0
    from ..models.page_run_items_item_usage_type_0 import PageRunItemsItemUsageType0
    from ..models.run_trigger import RunTrigger


T = TypeVar("T", bound="PageRunItemsItem")


@_attrs_define
class PageRunItemsItem:
    """A run.

    Attributes:
        agent_id (str): The agent.
        created_at_ms (int): Accepted at (control plane clock).
        id (str): The run id (named by the control plane; the guest's `task.run-id`).
        node_id (str): The node it was (last) delivered to.
        status (str): `queued`, `running`, `finished`, or `dead`: no node took it after
            `[runs] max_deliveries` deliveries (see `last_error`; `POST
            /v1/runs/{id}/retry`).
        tenant_id (str): Its tenant.
        deliveries (int | None | Unset): Deliveries to a node so far (more than 1: retried, or re-queued
            after its node was lost).
        expires_at_ms (int | None | Unset): When the node deletes its output and logs, in answers that come from
            the node.
        finished_at_ms (int | None | Unset): Ended at (node clock).
        last_error (None | str | Unset): Why the last delivery failed (`node_lost` after a re-queue).
        logs (list[PageRunItemsItemLogsType0Item] | None | Unset): Log lines, in answers that come from the node.
        outcome (None | PageRunItemsItemOutcomeType0 | Unset): How it ended: `{"status": "completed", "output": ...}`
            and so on in
            answers that come from the node; only `{"status": ...}` in lists and
            once the node no longer has the run.
        started_at_ms (int | None | Unset): Started executing at (node clock), in answers that come from the node.
        trigger (None | RunTrigger | Unset):
        usage (None | PageRunItemsItemUsageType0 | Unset): What it used (the node's `RunUsage`), once finished.
    """

    agent_id: str
    created_at_ms: int
    id: str
    node_id: str
    status: str
    tenant_id: str
    deliveries: int | None | Unset = UNSET
    expires_at_ms: int | None | Unset = UNSET
    finished_at_ms: int | None | Unset = UNSET
    last_error: None | str | Unset = UNSET
    logs: list[PageRunItemsItemLogsType0Item] | None | Unset = UNSET
    outcome: None | PageRunItemsItemOutcomeType0 | Unset = UNSET
    started_at_ms: int | None | Unset = UNSET
    trigger: None | RunTrigger | Unset = UNSET
    usage: None | PageRunItemsItemUsageType0 | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from ..models.page_run_items_item_outcome_type_0 import (
            PageRunItemsItemOutcomeType0,
        )  # noqa: PLC0415
        from ..models.page_run_items_item_usage_type_0 import PageRunItemsItemUsageType0  # noqa: PLC0415
        from ..models.run_trigger import RunTrigger  # noqa: PLC0415

        agent_id = self.agent_id

        created_at_ms = self.created_at_ms

        id = self.id

        node_id = self.node_id

        status = self.status

        tenant_id = self.tenant_id

        deliveries: int | None | Unset
        if isinstance(self.deliveries, Unset):
            deliveries = UNSET
        else:
            deliveries = self.deliveries

        expires_at_ms: int | None | Unset
        if isinstance(self.expires_at_ms, Unset):
            expires_at_ms = UNSET
        else:
            expires_at_ms = self.expires_at_ms

        finished_at_ms: int | None | Unset
        if isinstance(self.finished_at_ms, Unset):
            finished_at_ms = UNSET
        else:
            finished_at_ms = self.finished_at_ms

        last_error: None | str | Unset
        if isinstance(self.last_error, Unset):
            last_error = UNSET
        else:
            last_error = self.last_error

        logs: list[dict[str, Any]] | None | Unset
        if isinstance(self.logs, Unset):
            logs = UNSET
        elif isinstance(self.logs, list):
            logs = []
            for logs_type_0_item_data in self.logs:
                logs_type_0_item = logs_type_0_item_data.to_dict()
                logs.append(logs_type_0_item)

        else:
            logs = self.logs

        outcome: dict[str, Any] | None | Unset
        if isinstance(self.outcome, Unset):
            outcome = UNSET
        elif isinstance(self.outcome, PageRunItemsItemOutcomeType0):
            outcome = self.outcome.to_dict()
        else:
            outcome = self.outcome

        started_at_ms: int | None | Unset
        if isinstance(self.started_at_ms, Unset):
            started_at_ms = UNSET
        else:
            started_at_ms = self.started_at_ms

        trigger: dict[str, Any] | None | Unset
        if isinstance(self.trigger, Unset):
            trigger = UNSET
        elif isinstance(self.trigger, RunTrigger):
            trigger = self.trigger.to_dict()
        else:
            trigger = self.trigger

        usage: dict[str, Any] | None | Unset
        if isinstance(self.usage, Unset):
            usage = UNSET
        elif isinstance(self.usage, PageRunItemsItemUsageType0):
            usage = self.usage.to_dict()
        else:
            usage = self.usage

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "agent_id": agent_id,
                "created_at_ms": created_at_ms,
                "id": id,
                "node_id": node_id,
                "status": status,
                "tenant_id": tenant_id,
            }
        )
        if deliveries is not UNSET:
            field_dict["deliveries"] = deliveries
        if expires_at_ms is not UNSET:
            field_dict["expires_at_ms"] = expires_at_ms
        if finished_at_ms is not UNSET:
            field_dict["finished_at_ms"] = finished_at_ms
        if last_error is not UNSET:
            field_dict["last_error"] = last_error
        if logs is not UNSET:
            field_dict["logs"] = logs
        if outcome is not UNSET:
            field_dict["outcome"] = outcome
        if started_at_ms is not UNSET:
            field_dict["started_at_ms"] = started_at_ms
        if trigger is not UNSET:
            field_dict["trigger"] = trigger
        if usage is not UNSET:
            field_dict["usage"] = usage

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.page_run_items_item_logs_type_0_item import (
            PageRunItemsItemLogsType0Item,
        )  # noqa: PLC0415
        from ..models.page_run_items_item_outcome_type_0 import (
            PageRunItemsItemOutcomeType0,
        )  # noqa: PLC0415
        from ..models.page_run_items_item_usage_type_0 import PageRunItemsItemUsageType0  # noqa: PLC0415
        from ..models.run_trigger import RunTrigger  # noqa: PLC0415

        d = dict(src_dict)
        agent_id = d.pop("agent_id")

        created_at_ms = d.pop("created_at_ms")

        id = d.pop("id")

        node_id = d.pop("node_id")

        status = d.pop("status")

        tenant_id = d.pop("tenant_id")

        def _parse_deliveries(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        deliveries = _parse_deliveries(d.pop("deliveries", UNSET))

        def _parse_expires_at_ms(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        expires_at_ms = _parse_expires_at_ms(d.pop("expires_at_ms", UNSET))

        def _parse_finished_at_ms(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        finished_at_ms = _parse_finished_at_ms(d.pop("finished_at_ms", UNSET))

        def _parse_last_error(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        last_error = _parse_last_error(d.pop("last_error", UNSET))

        def _parse_logs(
            data: object,
        ) -> list[PageRunItemsItemLogsType0Item] | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, list):
                    raise TypeError()
                logs_type_0 = []
                _logs_type_0 = data
                for logs_type_0_item_data in _logs_type_0:
                    logs_type_0_item = PageRunItemsItemLogsType0Item.from_dict(
                        logs_type_0_item_data
                    )

                    logs_type_0.append(logs_type_0_item)

                return logs_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(list[PageRunItemsItemLogsType0Item] | None | Unset, data)

        logs = _parse_logs(d.pop("logs", UNSET))

        def _parse_outcome(data: object) -> None | PageRunItemsItemOutcomeType0 | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                outcome_type_0 = PageRunItemsItemOutcomeType0.from_dict(data)

                return outcome_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | PageRunItemsItemOutcomeType0 | Unset, data)

        outcome = _parse_outcome(d.pop("outcome", UNSET))

        def _parse_started_at_ms(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        started_at_ms = _parse_started_at_ms(d.pop("started_at_ms", UNSET))

        def _parse_trigger(data: object) -> None | RunTrigger | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                trigger_type_1 = RunTrigger.from_dict(data)

                return trigger_type_1
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | RunTrigger | Unset, data)

        trigger = _parse_trigger(d.pop("trigger", UNSET))

        def _parse_usage(data: object) -> None | PageRunItemsItemUsageType0 | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                usage_type_0 = PageRunItemsItemUsageType0.from_dict(data)

                return usage_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | PageRunItemsItemUsageType0 | Unset, data)

        usage = _parse_usage(d.pop("usage", UNSET))

        page_run_items_item = cls(
            agent_id=agent_id,
            created_at_ms=created_at_ms,
            id=id,
            node_id=node_id,
            status=status,
            tenant_id=tenant_id,
            deliveries=deliveries,
            expires_at_ms=expires_at_ms,
            finished_at_ms=finished_at_ms,
            last_error=last_error,
            logs=logs,
            outcome=outcome,
            started_at_ms=started_at_ms,
            trigger=trigger,
            usage=usage,
        )

        page_run_items_item.additional_properties = d
        return page_run_items_item

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
