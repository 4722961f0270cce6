"""Mini-batch SGD with momentum and weight decay, and learning-rate schedules.

The update is PyTorch's `torch.optim.SGD` (dampening 0, no Nesterov), so the two backends
can be compared step by step:
    g = grad + weight_decay * W        (weights only: decaying biases only costs accuracy)
    v = momentum * v + g
    W = W - lr * v
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

# A schedule maps (update index, total updates) -> factor on the base learning rate.
ScheduleFn = Callable[[int, int], float]
SCHEDULES = ("constant", "cosine", "step")
STEP_MILESTONES = (0.5, 0.75)  # "step": lr x0.1 after half and after three quarters
STEP_GAMMA = 0.1


class SGD:
    def __init__(
        self,
        params: Sequence[np.ndarray],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        self.params = list(params)  # live arrays, updated in place
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.velocity = [np.zeros_like(p) for p in self.params]

    def step(self, grads: Sequence[np.ndarray], lr: float | None = None) -> None:
        lr = self.lr if lr is None else lr
        for p, g, v in zip(self.params, grads, self.velocity, strict=True):
            if self.weight_decay and p.ndim > 1:
                g = g + self.weight_decay * p
            if self.momentum:
                v *= self.momentum
                v += g
                g = v
            p -= lr * g


def lr_factor(schedule: str | ScheduleFn, step: int, total_steps: int) -> float:
    """The multiplier on the base learning rate at update `step` (0-based) of `total_steps`."""
    if callable(schedule):
        return float(schedule(step, total_steps))
    progress = step / max(total_steps, 1)  # 0 at the first update, -> 1 at the end
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        # Half a cosine from 1 down to 0: large steps early, fine steps at the end.
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "step":
        return STEP_GAMMA ** sum(progress >= m for m in STEP_MILESTONES)
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
