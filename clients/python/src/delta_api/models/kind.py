from typing import Literal

Kind = Literal["bot", "main"]

KIND_VALUES: set[Kind] = {
    "bot",
    "main",
}


def check_kind(value: str) -> Kind:
    if value in KIND_VALUES:
        return value
    raise TypeError(f"Unexpected value {value!r}. Expected one of {KIND_VALUES!r}")
