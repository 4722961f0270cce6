"""The loss the user trains with, by name or as any callable, and what kind of loss it is.

The kind decides which outputs are right: cross-entropy wants logits (it applies log-softmax
itself), NLL wants log-probabilities. A callable we have never seen is classified by what it
does, not by its name: cross-entropy does not change when every logit of a row moves by the
same amount (log-softmax is shift-invariant); NLL drops by exactly that amount (-z[y]).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.errors import MnistlabError

LOSS_NAMES = ("cross_entropy", "nll", "mse")


@dataclass
class Loss:
    name: str  # for the report, e.g. "cross_entropy" or "CrossEntropyLoss(label_smoothing=0.1)"
    kind: str  # "cross_entropy" | "nll" | "other"
    targets: str  # "index": int64 (B,) class indices; "one_hot": float (B, C)
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def __call__(self, output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """`labels` are always int64 class indices here; one-hot targets are made from them."""
        if self.targets == "one_hot":
            return self.fn(output, F.one_hot(labels, output.shape[1]).to(output.dtype))
        return self.fn(output, labels)


def _mse_one_hot(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(output, target)


def resolve_loss(loss: str | nn.Module | Callable | None) -> Loss:
    if loss is None or isinstance(loss, str):
        name = (loss or "cross_entropy").replace("-", "_")
        if name == "cross_entropy":
            return Loss(name, "cross_entropy", "index", F.cross_entropy)
        if name == "nll":
            return Loss(name, "nll", "index", F.nll_loss)
        if name == "mse":
            return Loss(name, "other", "one_hot", _mse_one_hot)
        raise MnistlabError(f"--loss: unknown loss '{loss}'; choose one of: "
                            f"{', '.join(LOSS_NAMES)}")
    if not callable(loss):
        raise MnistlabError(f"loss_fn: expected a loss name or a callable, got {type(loss)}")
    kind, targets = classify_loss(loss)
    name = repr(loss) if isinstance(loss, nn.Module) else getattr(loss, "__name__", repr(loss))
    return Loss(name, kind, targets, loss)


def classify_loss(fn: Callable, classes: int = 10) -> tuple[str, str]:
    """(kind, targets) of an unknown loss, from how it responds to shifted inputs."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(16, classes, generator=g)
    y = torch.randint(0, classes, (16,), generator=g)
    for targets, t in (("index", y), ("one_hot", F.one_hot(y, classes).float())):
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # MSE warns about broadcasting index targets
                base, shifted = float(fn(z, t)), float(fn(z + 3.0, t))
        except (RuntimeError, ValueError, IndexError, TypeError):
            continue
        if abs(base - shifted) < 1e-4 * max(1.0, abs(base)):
            return "cross_entropy", targets
        if targets == "index" and abs((base - 3.0) - shifted) < 1e-4 * max(1.0, abs(base)):
            return "nll", targets
        return "other", targets
    raise MnistlabError("loss_fn: could not call it as loss_fn(output (B, 10), labels) with "
                        "class indices or one-hot targets")
