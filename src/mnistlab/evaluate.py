"""Evaluation: loss, accuracy, per-class accuracy and the confusion matrix of a model on a split."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.data.pipeline import Batcher, Normalizer, Split
from mnistlab.device import autocast
from mnistlab.text import plural


@dataclass
class EvalResult:
    loss: float
    correct: int
    total: int
    confusion: torch.Tensor  # (10, 10) int64, rows = true class, columns = predicted

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.total, 1)

    @property
    def per_class_accuracy(self) -> list[float]:
        support = self.confusion.sum(1).clamp(min=1)
        return (self.confusion.diag() / support).tolist()

    def to_dict(self) -> dict[str, Any]:
        return {"loss": self.loss, "accuracy": self.accuracy, "correct": self.correct,
                "total": self.total, "per_class_accuracy": self.per_class_accuracy,
                "confusion_matrix": self.confusion.tolist()}


@torch.no_grad()
def predict_logits(model: nn.Module, batcher: Batcher, bf16: bool = False,
                   max_batches: int | None = None, tick: Callable[[int], None] | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """All logits (float32, CPU) and labels of a batcher's split, in order. `tick(images)`
    after every batch (a ThreadController's, which may change the thread count)."""
    was_training = model.training
    model.eval()
    logits, labels = [], []
    try:
        for i, (x, y) in enumerate(batcher.epoch(0)):
            if max_batches is not None and i >= max_batches:
                break
            with autocast(batcher.device, bf16):
                logits.append(model(x).float())
            labels.append(y)
            if tick is not None:
                tick(len(y))
    finally:
        model.train(was_training)
    if not logits:  # an empty split
        return torch.empty(0, 10), torch.empty(0, dtype=torch.int64)
    # One device-to-host copy at the end, not a synchronising copy per batch.
    return torch.cat(logits).cpu(), torch.cat(labels).cpu()


def evaluate(model: nn.Module, split: Split, normalizer: Normalizer, *, batch_size: int = 1000,
             device: torch.device | str = "cpu", bf16: bool = False,
             max_batches: int | None = None, num_classes: int = 10,
             tick: Callable[[int], None] | None = None) -> EvalResult:
    batcher = Batcher(split, batch_size, normalizer, device=device)
    return evaluate_batches(model, batcher, bf16, max_batches, num_classes, tick)


def evaluate_batches(model: nn.Module, batcher: Batcher, bf16: bool = False,
                     max_batches: int | None = None, num_classes: int = 10,
                     tick: Callable[[int], None] | None = None) -> EvalResult:
    """`evaluate` on a Batcher that already holds the split on its device (reused per epoch)."""
    logits, labels = predict_logits(model, batcher, bf16, max_batches, tick)
    return result_from_logits(logits, labels, num_classes)


def result_from_logits(logits: torch.Tensor, labels: torch.Tensor,
                       num_classes: int = 10) -> EvalResult:
    predicted = logits.argmax(1)
    confusion = torch.bincount(labels * num_classes + predicted,
                               minlength=num_classes**2).reshape(num_classes, num_classes)
    return EvalResult(loss=float(F.cross_entropy(logits, labels)),
                      correct=int((predicted == labels).sum()), total=len(labels),
                      confusion=confusion)


def checkpoint_split(state: dict[str, Any], data: Any, split: str) -> Split:
    """`test`, or the run's own `val` (the images that chose best.pt: the same seed and
    size, drawn by data.split like the run did) or `train` (the rest of the training set)."""
    from mnistlab.data.pipeline import train_val_split
    from mnistlab.data.split import split_seed_of
    from mnistlab.errors import MnistlabError

    if split == "test":
        return Split(data.test_images, data.test_labels)
    config = state.get("config") or {}
    if "val_size" not in config or "seed" not in config:
        if split == "train":
            return Split(data.train_images, data.train_labels)
        raise MnistlabError(f"{state.get('path', 'checkpoint')}: records no validation split "
                            "(no seed and val-size); evaluate --split test or train")
    val_size = int(config["val_size"])
    if split == "val" and val_size == 0:
        raise MnistlabError(f"{state.get('path', 'checkpoint')}: the run held out no validation "
                            "images (--val-size 0: it trained on all of them); evaluate --split "
                            "test")
    if val_size >= len(data.train_labels):
        raise MnistlabError(f"--split {split}: the run held out {plural(val_size, 'image')}, "
                            f"more than {data.name}'s {len(data.train_labels)} training images")
    train, val = train_val_split(data.train_images, data.train_labels, val_size,
                                 split_seed_of(config))
    return val if split == "val" else train


def format_confusion(confusion: torch.Tensor, classes: tuple[str, ...] | list[str]) -> str:
    """The confusion matrix as a text table (rows: true class, columns: predicted).
    Names longer than 5 characters (Fashion-MNIST's "T-shirt/top") head the rows in full
    with their number, and the columns take the numbers, so the table stays narrow."""
    names = [str(c) for c in classes]
    short = all(len(name) <= 5 for name in names)
    columns = names if short else [str(i) for i in range(len(names))]
    row_names = names if short else [f"{i} {name}" for i, name in enumerate(names)]
    first = max(10, *(len(name) + 2 for name in row_names))
    width = max(5, len(str(int(confusion.max()))) + 1, *(len(c) + 1 for c in columns))
    head = "true\\pred".ljust(first) + "".join(c.rjust(width) for c in columns)
    rows = [row_names[i].ljust(first) + "".join(str(int(v)).rjust(width) for v in row)
            for i, row in enumerate(confusion)]
    return "\n".join([head, *rows])
