from typing import Literal

SetTierTier = Literal["developer", "free", "team"]

SET_TIER_TIER_VALUES: set[SetTierTier] = {
    "developer",
    "free",
    "team",
}


def check_set_tier_tier(value: str) -> SetTierTier:
    if value in SET_TIER_TIER_VALUES:
        return value
    raise TypeError(
        f"Unexpected value {value!r}. Expected one of {SET_TIER_TIER_VALUES!r}"
    )
