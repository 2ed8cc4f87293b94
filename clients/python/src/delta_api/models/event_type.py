from typing import Literal

EventType = Literal[
    "bounty.completed",
    "bounty.funded",
    "bounty.refunded",
    "run.completed",
    "run.failed",
    "submission.approved",
    "submission.created",
    "submission.rejected",
    "submission.verified",
    "workflow.cancelled",
    "workflow.completed",
    "workflow.failed",
]

EVENT_TYPE_VALUES: set[EventType] = {
    "bounty.completed",
    "bounty.funded",
    "bounty.refunded",
    "run.completed",
    "run.failed",
    "submission.approved",
    "submission.created",
    "submission.rejected",
    "submission.verified",
    "workflow.cancelled",
    "workflow.completed",
    "workflow.failed",
}


def check_event_type(value: str) -> EventType:
    if value in EVENT_TYPE_VALUES:
        return value
    raise TypeError(
        f"Unexpected value {value!r}. Expected one of {EVENT_TYPE_VALUES!r}"
    )
