from typing import Literal

TemplateStatus = Literal["approved", "draft", "pending_operator", "rejected"]

TEMPLATE_STATUS_VALUES: set[TemplateStatus] = {
    "approved",
    "draft",
    "pending_operator",
    "rejected",
}


def check_template_status(value: str) -> TemplateStatus:
    if value in TEMPLATE_STATUS_VALUES:
        return value
    raise TypeError(
        f"Unexpected value {value!r}. Expected one of {TEMPLATE_STATUS_VALUES!r}"
    )
