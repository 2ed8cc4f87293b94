from typing import Literal

CatchUpName = Literal["run_once", "skip"]

CATCH_UP_NAME_VALUES: set[CatchUpName] = {
    "run_once",
    "skip",
}


def check_catch_up_name(value: str) -> CatchUpName:
    if value in CATCH_UP_NAME_VALUES:
        return value
    raise TypeError(
        f"Unexpected value {value!r}. Expected one of {CATCH_UP_NAME_VALUES!r}"
    )
