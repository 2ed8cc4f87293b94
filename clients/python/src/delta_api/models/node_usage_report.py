from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, TYPE_CHECKING

from attrs import define as _attrs_define
from attrs import field as _attrs_field


if TYPE_CHECKING:
    from ..models.node_usage_report_records_item import NodeUsageReportRecordsItem


T = TypeVar("T", bound="NodeUsageReport")


@_attrs_define
class NodeUsageReport:
    """Body of `POST /v1/nodes/usage` (the node's `UsageBatch`).

    Attributes:
        batch_id (str): Stable for the same records (also the `Idempotency-Key`).
        node_id (str): The reporting node.
        records (list[NodeUsageReportRecordsItem]): One record per finished run (`RunUsage` of the node API).
    """

    batch_id: str
    node_id: str
    records: list[NodeUsageReportRecordsItem]
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        batch_id = self.batch_id

        node_id = self.node_id

        records = []
        for records_item_data in self.records:
            records_item = records_item_data.to_dict()
            records.append(records_item)

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "batch_id": batch_id,
                "node_id": node_id,
                "records": records,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.node_usage_report_records_item import NodeUsageReportRecordsItem  # noqa: PLC0415

        d = dict(src_dict)
        batch_id = d.pop("batch_id")

        node_id = d.pop("node_id")

        records = []
        _records = d.pop("records")
        for records_item_data in _records:
            records_item = NodeUsageReportRecordsItem.from_dict(records_item_data)

            records.append(records_item)

        node_usage_report = cls(
            batch_id=batch_id,
            node_id=node_id,
            records=records,
        )

        node_usage_report.additional_properties = d
        return node_usage_report

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
