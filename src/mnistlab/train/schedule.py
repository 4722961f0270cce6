"""What the learning rate does when `--resume RUN --epochs N` extends a run past its schedule.

One-cycle and cosine schedules are planned for a fixed number of steps and end at (nearly)
zero, so more epochs cannot simply continue them. The added epochs run a *tail*: a new
cosine decay from a tenth of the configured peak rate (`--lr`) down to zero, spread over all
the added epochs. `step` and `none` have no length: an extended run just continues them.
Each extension re-plans the tail over every epoch past the original schedule.
"""

from __future__ import annotations

import math

import torch

from mnistlab.train.config import TrainConfig

TAIL_FACTOR = 0.1  # the tail starts at this fraction of the peak learning rate
SCHEDULES_WITH_LENGTH = ("onecycle", "cosine")


def tail_lr(config: TrainConfig, step: int, steps_per_epoch: int) -> float | None:
    """The learning rate of update `step` (0-based, whole run) when it falls in the tail of an
    extended run; None while the original schedule applies."""
    if config.schedule not in SCHEDULES_WITH_LENGTH or config.schedule_epochs is None:
        return None
    main = config.schedule_epochs * steps_per_epoch
    tail = (config.epochs - config.schedule_epochs) * steps_per_epoch
    if step < main or tail <= 0:
        return None
    progress = min((step - main) / tail, 1.0)
    return config.lr * TAIL_FACTOR * 0.5 * (1.0 + math.cos(math.pi * progress))


def apply_tail(optimizer: torch.optim.Optimizer, config: TrainConfig, step: int,
               steps_per_epoch: int) -> bool:
    """Set the tail's rate for update `step`; True when the tail, not the scheduler, rules
    (the caller then leaves the scheduler alone: it has reached its last step)."""
    lr = tail_lr(config, step, steps_per_epoch)
    if lr is None:
        return False
    for group in optimizer.param_groups:
        group["lr"] = lr
    return True
