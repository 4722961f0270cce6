"""`mnistlab train --doctor`: examine the configured model and recipe before training."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable
from typing import TextIO

import torch
from torch import nn

from mnistlab.errors import MnistlabError
from mnistlab.train.config import TrainConfig


def optimizer_factory(config: TrainConfig):
    """(params, lr) -> the optimizer `config` describes, at learning rate `lr`."""
    from mnistlab.train.optim import build_optimizer

    def build(params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
        return build_optimizer(list(params), dataclasses.replace(config, lr=lr))

    return build


def optimizer_label(config: TrainConfig) -> str:
    extra = [f"momentum {config.momentum:g}"] if config.optimizer == "sgd" else []
    if config.weight_decay:
        extra.append(f"weight decay {config.weight_decay:g}")
    return config.optimizer + (f" ({', '.join(extra)})" if extra else "")


def warmup_lr(config: TrainConfig) -> float | None:
    """The rate of the first steps when the schedule warms up (one-cycle's starting rate)."""
    from mnistlab.train.optim import ONECYCLE_DIV_FACTOR

    return config.lr / ONECYCLE_DIV_FACTOR if config.schedule == "onecycle" else None


def examine_config(config: TrainConfig, data=None):
    from mnistlab.data.dataset import load_dataset
    from mnistlab.doctor.examine import examine
    from mnistlab.models import create_model

    data = data or load_dataset(config.dataset, config.data_dir, config.download)
    torch.manual_seed(config.seed)  # the initialisation the training run will start from
    model = create_model(config.model, **config.model_args)
    return examine(
        model, loss_fn="cross_entropy", optimizer_factory=optimizer_factory(config),
        optimizer_name=optimizer_label(config), lr=config.lr, warmup_lr=warmup_lr(config),
        batch_size=config.batch_size, epochs=config.epochs,
        train_size=len(data.train_labels) - config.val_size, data=data, normalize=True,
        shuffle=True, device=config.device, seed=config.seed,
        subject=f"{config.model} {config.model_args or ''}".strip())


def doctor_before_training(config: TrainConfig, stream: TextIO | None = None,
                           data=None) -> None:
    """Print the doctor's report; raise MnistlabError (exit 1) if it found an error. `data`:
    the data set already loaded for training, if any."""
    if config.backend != "torch":
        raise MnistlabError("--doctor examines PyTorch models; it does not support "
                            "--backend numpy")
    report = examine_config(config, data)
    out = stream or sys.stdout
    out.write(report.format() + "\n\n")
    out.flush()
    if report.errors:
        raise MnistlabError(f"the doctor found {len(report.errors)} error(s) "
                            f"({', '.join(f.name for f in report.errors)}); fix them, or train "
                            "without --doctor", exit_code=1)
