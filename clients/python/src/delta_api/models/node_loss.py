from typing import Literal

NodeLoss = Literal["fail", "requeue"]

NODE_LOSS_VALUES: set[NodeLoss] = {
    "fail",
    "requeue",
}


def check_node_loss(value: str) -> NodeLoss:
    if value in NODE_LOSS_VALUES:
        return value
    raise TypeError(f"Unexpected value {value!r}. Expected one of {NODE_LOSS_VALUES!r}")
