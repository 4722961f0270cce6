"""Optimisers and learning-rate schedules by name."""

from __future__ import annotations

import torch
from torch import nn

from mnistlab.train.config import TrainConfig

ONECYCLE_DIV_FACTOR = 10.0  # one-cycle starts at lr / this and warms up to lr


def build_optimizer(params: list[nn.Parameter] | nn.Module,
                    config: TrainConfig) -> torch.optim.Optimizer:
    if isinstance(params, nn.Module):
        params = list(params.parameters())
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                               nesterov=config.nesterov and config.momentum > 0,
                               weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adadelta":
        return torch.optim.Adadelta(params, lr=config.lr, weight_decay=config.weight_decay)
    raise ValueError(f"unknown optimizer {config.optimizer}")


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Schedules step once per batch (onecycle, cosine) or once per epoch (step). They span
    `config.schedule_epochs` (set when a run was extended, see train.schedule), else all."""
    total = (config.schedule_epochs or config.epochs) * steps_per_epoch
    if config.schedule == "onecycle":
        # OneCycleLR divides by zero when the warm-up is exactly one step (4 steps in all).
        pct_start = 0.25 if total * 0.25 != 1 else 0.3
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=total, pct_start=pct_start,
            # SGD momentum cycling fights Nesterov at these short schedules; keep it fixed.
            cycle_momentum=False, div_factor=ONECYCLE_DIV_FACTOR, final_div_factor=100.0)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if config.schedule == "step":
        # Counted in batches so that every schedule steps at the same place in the loop.
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=config.step_size * steps_per_epoch, gamma=config.gamma)
    return None
