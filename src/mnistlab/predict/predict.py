"""Classify images that are already in MNIST form: logits, softmax probabilities, top-k.

The network outputs logits, one unnormalised score per class. Softmax turns them into
probabilities that sum to 1 without changing their order, so the class with the largest
logit is also the most probable one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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

    def to_dict(self, classes: Sequence[str] | None = None) -> dict[str, Any]:
        def name(i: int) -> str:
            return classes[i] if classes is not None else str(i)

        return {"label": self.label, "class": name(self.label), "probability": self.probability,
                "top": [{"label": i, "class": name(i), "probability": p} for i, p in self.top],
                "logits": self.logits, "probabilities": self.probabilities}


@torch.no_grad()
def predict(model: nn.Module, normalizer: Normalizer, images_u8: np.ndarray | torch.Tensor,
            device: torch.device | str = "cpu", top_k: int = 3) -> list[Prediction]:
    """Predictions for uint8 images (N, 28, 28), white digits on black, in batches."""
    images = torch.as_tensor(np.asarray(images_u8))
    if images.ndim != 3 or images.dtype != torch.uint8:
        raise MnistlabError(f"predict: expected uint8 images of shape (N, 28, 28), "
                            f"got {images.dtype} {tuple(images.shape)}")
    if top_k < 1:
        raise MnistlabError(f"--top-k must be at least 1, got {top_k}")
    if len(images) == 0:
        return []
    was_training = model.training
    model.eval()
    try:
        logits = torch.cat([model(normalizer(chunk.to(device))).float().cpu()
                            for chunk in images.split(BATCH)])
    finally:
        model.train(was_training)
    return predictions_from_logits(logits, top_k)


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
