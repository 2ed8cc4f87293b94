from typing import Literal

Reason = Literal["created", "moved", "updated"]

REASON_VALUES: set[Reason] = {
    "created",
    "moved",
    "updated",
}


def check_reason(value: str) -> Reason:
    if value in REASON_VALUES:
        return value
    raise TypeError(f"Unexpected value {value!r}. Expected one of {REASON_VALUES!r}")
