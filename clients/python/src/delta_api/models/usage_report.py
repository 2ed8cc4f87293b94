from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, TYPE_CHECKING

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

from typing import cast

if TYPE_CHECKING:
    from ..models.usage_report_budget_type_0 import UsageReportBudgetType0
    from ..models.usage_row import UsageRow


T = TypeVar("T", bound="UsageReport")


@_attrs_define
class UsageReport:
    """Answer of `GET /v1/usage`.

    Attributes:
        from_ (str): First day of the range.
        group_by (list[str]): The grouping applied.
        rows (list[UsageRow]): The sums, ordered by the grouping, then kind and detail.
        to (str): Last day of the range.
        truncated (bool): True when more than the maximum number of rows matched (narrow the
            query).
        budget (None | Unset | UsageReportBudgetType0): The budget of the agent (with `agent_id`) or of the user (with
            `user_id`, or the caller's own otherwise): what remains alongside
            what was used.
    """

    from_: str
    group_by: list[str]
    rows: list[UsageRow]
    to: str
    truncated: bool
    budget: None | Unset | UsageReportBudgetType0 = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from ..models.usage_report_budget_type_0 import UsageReportBudgetType0  # noqa: PLC0415

        from_ = self.from_

        group_by = self.group_by

        rows = []
        for rows_item_data in self.rows:
            rows_item = rows_item_data.to_dict()
            rows.append(rows_item)

        to = self.to

        truncated = self.truncated

        budget: dict[str, Any] | None | Unset
        if isinstance(self.budget, Unset):
            budget = UNSET
        elif isinstance(self.budget, UsageReportBudgetType0):
            budget = self.budget.to_dict()
        else:
            budget = self.budget

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "from": from_,
                "group_by": group_by,
                "rows": rows,
                "to": to,
                "truncated": truncated,
            }
        )
        if budget is not UNSET:
            field_dict["budget"] = budget

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.usage_report_budget_type_0 import UsageReportBudgetType0  # noqa: PLC0415
        from ..models.usage_row import UsageRow  # noqa: PLC0415

        d = dict(src_dict)
        from_ = d.pop("from")

        group_by = cast(list[str], d.pop("group_by"))

        rows = []
        _rows = d.pop("rows")
        for rows_item_data in _rows:
            rows_item = UsageRow.from_dict(rows_item_data)

            rows.append(rows_item)

        to = d.pop("to")

        truncated = d.pop("truncated")

        def _parse_budget(data: object) -> None | Unset | UsageReportBudgetType0:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                budget_type_0 = UsageReportBudgetType0.from_dict(data)

                return budget_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | Unset | UsageReportBudgetType0, data)

        budget = _parse_budget(d.pop("budget", UNSET))

        usage_report = cls(
            from_=from_,
            group_by=group_by,
            rows=rows,
            to=to,
            truncated=truncated,
            budget=budget,
        )

        usage_report.additional_properties = d
        return usage_report

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
