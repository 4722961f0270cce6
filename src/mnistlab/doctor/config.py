"""The doctor from a `TrainConfig`: the one entry point `mnistlab doctor` and
`mnistlab train --doctor` share.

The config says everything the doctor needs about how the model will be trained: the
optimizer and its settings, the learning rate and its warm-up, the batch size, the epochs, the
data set, the training split (the training images minus the `val_size` held out), the device
and the seed the run's initialisation comes from.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TextIO

import torch
from torch import nn

from mnistlab.errors import MnistlabError

if TYPE_CHECKING:
    from mnistlab.data.dataset import DigitData
    from mnistlab.doctor.findings import Report
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


def training_size(config: TrainConfig, data: DigitData) -> int:
    """The images one epoch trains on: the training split minus the validation hold-out."""
    total = len(data.train_labels)
    if config.val_size >= total:  # as training itself refuses it
        raise MnistlabError(f"--val-size {config.val_size} leaves no training images (the "
                            f"training set has {total})")
    return total - config.val_size


def examine_config(config: TrainConfig, *, data: DigitData | None = None,
                   model: nn.Module | None = None, subject: str | None = None,
                   **options: Any) -> Report:
    """Examine a model trained the way `config` says.

    data: the data set already loaded (default: `config.dataset`, looked for as training
        would look for it).
    model: the model to examine (default: `config.model` with `config.model_args`, built
        after seeding with `config.seed`, so that it starts where the run would start).
    subject: the model's name in the report.
    options: anything else `examine()` takes (loss_fn, normalize, shuffle, trains_on_test,
        selects_on_test, eval_fn, trained, probe_lr...); they override what the config says,
        e.g. `epochs=None` to skip the update count for a trained checkpoint.
    """
    from mnistlab.data.dataset import load_dataset
    from mnistlab.doctor.examine import examine

    if data is None:
        data = load_dataset(config.dataset, config.data_dir, config.download)
    if model is None:
        from mnistlab.models import create_model

        torch.manual_seed(config.seed)  # the initialisation the training run will start from
        model = create_model(config.model, **config.model_args)
        subject = subject or f"{config.model} {config.model_args or ''}".strip()
    settings: dict[str, Any] = dict(
        loss_fn="cross_entropy", optimizer_factory=optimizer_factory(config),
        optimizer_name=optimizer_label(config), lr=config.lr, warmup_lr=warmup_lr(config),
        batch_size=config.batch_size, epochs=config.epochs,
        train_size=training_size(config, data), data=data, normalize=True, shuffle=True,
        classes=len(data.classes), device=config.device, seed=config.seed, subject=subject)
    settings.update(options)
    return examine(model, **settings)


def doctor_before_training(config: TrainConfig, stream: TextIO | None = None,
                           data: DigitData | None = None) -> None:
    """`train --doctor`: print the report of `examine_config(config)`; raise MnistlabError
    (exit 1) if it found an error. `data`: the data set already loaded for training, if any."""
    if config.backend != "torch":
        raise MnistlabError("--doctor examines PyTorch models; it does not support "
                            "--backend numpy")
    report = examine_config(config, data=data)
    out = stream or sys.stdout
    out.write(report.format() + "\n\n")
    out.flush()
    if report.errors:
        raise MnistlabError(f"the doctor found {len(report.errors)} error(s) "
                            f"({', '.join(f.name for f in report.errors)}); fix them, or train "
                            "without --doctor", exit_code=1)
