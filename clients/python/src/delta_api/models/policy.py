from typing import Literal

Policy = Literal["auto", "manual"]

POLICY_VALUES: set[Policy] = {
    "auto",
    "manual",
}


def check_policy(value: str) -> Policy:
    if value in POLICY_VALUES:
        return value
    raise TypeError(f"Unexpected value {value!r}. Expected one of {POLICY_VALUES!r}")
