"""Training loop: shuffled mini-batches, SGD, a learning-rate schedule, one report per epoch."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mnistlab.scratch.losses import LossFn, softmax_cross_entropy
from mnistlab.scratch.network import MLP
from mnistlab.scratch.optim import SGD, ScheduleFn, lr_factor

# The recipe behind the documented MNIST result (docs/scratch.md): MLP(**arch), fit(**train).
# The one definition: fit()'s defaults and `mnistlab train --backend numpy` both read it.
DEFAULT_RECIPE: dict[str, dict[str, Any]] = {
    "arch": {"sizes": (784, 200, 50, 10), "activation": "relu", "init": "he"},
    "train": {
        "epochs": 12,
        "batch_size": 64,
        "lr": 0.05,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "schedule": "cosine",
    },
}

_TRAIN = DEFAULT_RECIPE["train"]

# Called after each epoch with its record; returning True stops training (early stopping).
EpochCallback = Callable[[dict[str, Any]], "bool | None"]
# Called after each update with (updates so far, this batch's loss, its learning rate).
StepCallback = Callable[[int, float, float], None]


def evaluate(
    net: MLP,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int = 8192,
    loss_fn: LossFn = softmax_cross_entropy,
) -> tuple[float, float]:
    """(mean loss, accuracy) over a whole set, in chunks of `batch_size`."""
    total_loss, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        logits = net.forward(x[i : i + batch_size])  # (b, 10)
        loss, _ = loss_fn(logits, y[i : i + batch_size])
        total_loss += loss * len(logits)
        correct += int((logits.argmax(axis=1) == y[i : i + batch_size]).sum())
    n = max(len(x), 1)
    return total_loss / n, correct / n


def _train_step(
    net: MLP, opt: SGD, xb: np.ndarray, yb: np.ndarray, lr: float, loss_fn: LossFn
) -> tuple[float, int]:
    """One update on one batch; returns (batch loss, correct predictions in the batch)."""
    logits = net.forward(xb)  # (B, 10)
    loss, dlogits = loss_fn(logits, yb)  # scalar, (B, 10)
    net.backward(dlogits)
    opt.step(net.grads(), lr)
    return loss, int((logits.argmax(axis=1) == yb).sum())


def fit(
    net: MLP,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    epochs: int = _TRAIN["epochs"],
    batch_size: int = _TRAIN["batch_size"],
    lr: float = _TRAIN["lr"],
    momentum: float = _TRAIN["momentum"],
    weight_decay: float = _TRAIN["weight_decay"],
    schedule: str | ScheduleFn = _TRAIN["schedule"],
    seed: int = 0,
    on_epoch: EpochCallback | None = None,
    per_sample: bool = False,
    loss_fn: LossFn = softmax_cross_entropy,
    on_step: StepCallback | None = None,
) -> list[dict[str, Any]]:
    """Train `net` in place; returns one dict per epoch (also passed to `on_epoch`).

    x_* are (N, 784) arrays, already normalised; y_* are (N,) integer labels.
    Each epoch visits the training set in a fresh order drawn from `seed`.  With
    `per_sample=True` every example is its own update, in a plain Python loop over
    examples (as a first implementation usually is); `batch_size` is then ignored.
    The learning rate follows `schedule` per update.  Training stops early, after
    reporting, if the training loss stops being a finite number or `on_epoch` returns True.
    """
    if x_train.ndim != 2 or x_train.shape[1] != net.sizes[0] or len(x_train) == 0:
        raise ValueError(f"x_train must be (N, {net.sizes[0]}) with N > 0, got {x_train.shape}")
    if len(x_train) != len(y_train):
        raise ValueError(f"x_train has {len(x_train)} rows but y_train has {len(y_train)}")
    if batch_size < 1 or epochs < 1:
        raise ValueError("epochs and batch_size must be at least 1")
    rng = np.random.default_rng(seed)
    n = len(x_train)
    batch = 1 if per_sample else min(batch_size, n)
    steps_per_epoch = math.ceil(n / batch)
    total_steps = epochs * steps_per_epoch
    opt = SGD(net.params(), lr, momentum, weight_decay)
    history: list[dict[str, Any]] = []
    step = 0
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        order = rng.permutation(n)  # (N,) which example goes where this epoch
        epoch_lr = lr * lr_factor(schedule, step, total_steps)
        loss_sum, correct = 0.0, 0
        if per_sample:
            for i in order:  # one Python iteration per image
                step_lr = lr * lr_factor(schedule, step, total_steps)
                loss, hits = _train_step(net, opt, x_train[i : i + 1], y_train[i : i + 1],
                                         step_lr, loss_fn)
                loss_sum += loss
                correct += hits
                step += 1
        else:
            for s in range(0, n, batch):
                idx = order[s : s + batch]  # (B,) row indices: the batch is one gather
                step_lr = lr * lr_factor(schedule, step, total_steps)
                loss, hits = _train_step(net, opt, x_train[idx], y_train[idx], step_lr, loss_fn)
                loss_sum += loss * len(idx)
                correct += hits
                step += 1
                if on_step is not None:
                    on_step(step, loss, step_lr)
        train_seconds = time.perf_counter() - start
        val_loss, val_acc = (None, None)
        if x_val is not None and y_val is not None and len(x_val):
            val_loss, val_acc = evaluate(net, x_val, y_val, loss_fn=loss_fn)
        record = {
            "epoch": epoch,
            "train_loss": loss_sum / n,
            "train_acc": correct / n,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "lr": epoch_lr,
            "seconds": time.perf_counter() - start,
            "images_per_s": n / max(train_seconds, 1e-9),
        }
        history.append(record)
        stop = on_epoch(record) if on_epoch is not None else False
        if stop or not math.isfinite(record["train_loss"]):
            break
    return history
