"""Classify images that are already in MNIST form: logits, softmax probabilities, top-k.

The network outputs logits, one unnormalised score per class. Softmax turns them into
probabilities that sum to 1 without changing their order, so the class with the largest
logit is also the most probable one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from mnistlab.data.pipeline import Normalizer
from mnistlab.errors import MnistlabError

BATCH = 1000  # images per forward pass: bounds memory for large folders


@dataclass(frozen=True)
class Prediction:
    label: int  # index of the most probable class
    probability: float  # its softmax probability
    top: list[tuple[int, float]]  # the top-k (class index, probability), most probable first
    logits: list[float]  # raw scores, one per class
    probabilities: list[float]  # softmax(logits), one per class
    # Whether it looks like a digit at all (None: not asked, no gate and no input checks),
    # and when not, why: the input's problems, or the model's score under the gate.
    is_digit: bool | None = None
    reason: str | None = None

    def to_dict(self, classes: Sequence[str] | None = None) -> dict[str, Any]:
        def name(i: int) -> str:
            return classes[i] if classes is not None else str(i)

        out = {"label": self.label, "class": name(self.label), "probability": self.probability,
               "top": [{"label": i, "class": name(i), "probability": p} for i, p in self.top],
               "logits": self.logits, "probabilities": self.probabilities,
               "is_digit": self.is_digit}
        if self.reason is not None:
            out["reason"] = self.reason
        return out


class Gate(Protocol):
    """What `predict` needs of a not-a-digit gate (mnistlab.notadigit.gate.DigitGate)."""

    def accepts(self, logits: torch.Tensor) -> torch.Tensor: ...
    def scores(self, logits: torch.Tensor) -> torch.Tensor: ...


@torch.no_grad()
def predict(model: nn.Module, normalizer: Normalizer, images_u8: np.ndarray | torch.Tensor,
            device: torch.device | str = "cpu", top_k: int = 3, gate: Gate | None = None,
            problems: Sequence[Sequence[str]] | None = None) -> list[Prediction]:
    """Predictions for uint8 images (N, 28, 28), white digits on black, in batches.

    With a `gate` and/or `problems` (one list per image, from `prepare`), each prediction
    says whether it is a digit at all: the gate accepts its logits and its input has no
    problems (either alone decides when the other is not given)."""
    images = torch.as_tensor(np.asarray(images_u8))
    if images.ndim != 3 or images.dtype != torch.uint8:
        raise MnistlabError(f"predict: expected uint8 images of shape (N, 28, 28), "
                            f"got {images.dtype} {tuple(images.shape)}")
    if top_k < 1:
        raise MnistlabError(f"--top-k must be at least 1, got {top_k}")
    if problems is not None and len(problems) != len(images):
        raise MnistlabError(f"predict: {len(problems)} problem lists for {len(images)} images")
    if len(images) == 0:
        return []
    was_training = model.training
    model.eval()
    try:
        logits = torch.cat([model(normalizer(chunk.to(device))).float().cpu()
                            for chunk in images.split(BATCH)])
    finally:
        model.train(was_training)
    predictions = predictions_from_logits(logits, top_k)
    if gate is None and problems is None:
        return predictions
    accepted = gate.accepts(logits).tolist() if gate is not None else [True] * len(images)
    scores = gate.scores(logits).tolist() if gate is not None else [0.0] * len(images)
    threshold = getattr(gate, "threshold", None)
    return [judge(p, problems[i] if problems is not None else [], accepted[i], scores[i],
                  threshold) for i, p in enumerate(predictions)]


def judge(prediction: Prediction, problems: Sequence[str], accepted: bool, score: float,
          threshold: float | None) -> Prediction:
    """`prediction` with is_digit and, when not, the reason: the input's problems first, else
    the gate's verdict on its logits (`accepted`, `score` against `threshold`)."""
    reason = None
    if problems:
        reason = "; ".join(problems)
    elif not accepted:
        reason = "the model does not find it digit-like"
        if threshold is not None:
            reason += f" (score {score:.3g} < {threshold:.3g})"
    return replace(prediction, is_digit=reason is None, reason=reason)


def predictions_from_logits(logits: torch.Tensor, top_k: int = 3) -> list[Prediction]:
    """One Prediction per row of (N, classes) logits."""
    logits = logits.detach().float().cpu()
    probs = logits.softmax(1)
    k = min(top_k, probs.shape[1])
    top_p, top_i = probs.topk(k, dim=1)
    return [Prediction(label=int(ti[0]), probability=float(tp[0]),
                       top=list(zip(ti.tolist(), tp.tolist(), strict=True)),
                       logits=lg.tolist(), probabilities=p.tolist())
            for lg, p, tp, ti in zip(logits, probs, top_p, top_i, strict=True)]
