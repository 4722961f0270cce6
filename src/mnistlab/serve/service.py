"""The model side of the server: predictions and first-layer feature maps for MNIST-form digits.

One forward pass at a time (a lock): requests are decoded and preprocessed in parallel, but
PyTorch already spreads one pass over every core, so overlapping passes would only fight over
them and make each request slower.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import math
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from mnistlab.checkpoint import load_model
from mnistlab.data.pipeline import Normalizer
from mnistlab.errors import MnistlabError
from mnistlab.models.summary import count_params
from mnistlab.predict.predict import Prediction, predictions_from_logits
from mnistlab.predict.reader import NumberReading, Reader
from mnistlab.predict.segment import DigitCrop
from mnistlab.viz.activations import Activation, capture_activations

MAX_CHANNELS = 64  # feature maps shown per layer
FEATURE_LAYERS = 2  # convolution blocks shown
MAX_SUMMARY_BYTES = 1024 * 1024  # a run's summary.json is a few hundred bytes


class DigitModel:
    def __init__(self, model: nn.Module, normalizer: Normalizer, state: dict[str, Any],
                 device: torch.device) -> None:
        self.model, self.normalizer, self.state, self.device = model, normalizer, state, device
        # The library's reader: the same judgement (the run's not-a-digit gate, calibrated in
        # training or an uncalibrated fallback, and the input's problems) as the CLI's.
        self.reader = Reader(model, normalizer, state, device)
        self.classes, self.gate = self.reader.classes, self.reader.gate
        self.lock = threading.Lock()
        self.check_outputs()
        # Read once: the summary is informative, and parsing it is no work for a request.
        self.test_accuracy = run_test_accuracy(Path(state["path"]).parent / "summary.json")

    def check_outputs(self) -> None:
        """One blank digit through the model, before any request: a model that does not give
        one finite score per class would answer every request with a 500 or a NaN."""
        with torch.no_grad(), self.lock:
            x = self.normalizer(torch.zeros(1, 28, 28, dtype=torch.uint8, device=self.device))
            logits = self.model(x)
        source = self.state.get("path", "checkpoint")
        if tuple(logits.shape) != (1, len(self.classes)):
            outputs = logits.shape[1] if logits.ndim == 2 else tuple(logits.shape[1:])
            raise MnistlabError(f"{source}: the model gives {outputs} outputs per image, but "
                                f"the checkpoint names {len(self.classes)} classes")
        if not torch.isfinite(logits).all():
            raise MnistlabError(f"{source}: the model's outputs are not finite numbers (NaN "
                                "or infinite weights)")

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: torch.device) -> DigitModel:
        model, normalizer, state = load_model(path, device)
        return cls(model, normalizer, state, device)

    def predict(self, digits: np.ndarray,
                problems: list[list[str]] | None = None) -> list[dict[str, Any]]:
        """uint8 (N, 28, 28) -> one dict per image: label, class, probabilities, is_digit,
        input. `problems`: what the preprocessing found wrong with each picture."""
        with self.lock:
            predictions = self.reader.classify(digits, problems)
        return [{**p.to_dict(self.classes), "input": d.tolist()}
                for p, d in zip(predictions, digits, strict=True)]

    def predict_number(self, crops: list[DigitCrop]) -> dict[str, Any]:
        """The digits of a whole number, left to right: the text read, is_number (every
        digit passed the gate; else a reason), and per digit its label, probability,
        is_digit, box [x, y, width, height] and input."""
        with self.lock:
            predictions = self.reader.classify([c.array for c in crops])
        number = NumberReading(crops, predictions, self.classes).to_dict()
        for digit, crop in zip(number["digits"], crops, strict=True):
            digit["input"] = crop.array.tolist()
        return number

    def predict_with_feature_maps(self, digit: np.ndarray,
                                  problems: list[str] | None = None) -> dict[str, Any]:
        """One uint8 (28, 28) digit -> its prediction and what the first convolution blocks
        output, from a single forward pass."""
        x = self.normalizer(torch.from_numpy(digit)[None].to(self.device))
        with self.lock:
            activations, logits = capture_activations(self.model, x)
        (prediction,) = predictions_from_logits(logits)
        prediction = self.judge(prediction, logits, problems or [])
        return {"prediction": {**prediction.to_dict(self.classes), "input": digit.tolist()},
                "layers": [render_layer(conv, act) for conv, act in first_blocks(activations)]}

    def judge(self, prediction: Prediction, logits: torch.Tensor,
              problems: list[str]) -> Prediction:
        """is_digit as the reader decides it, for one prediction whose logits came from
        elsewhere (the feature-map pass)."""
        return self.reader.judge(prediction, logits, problems)

    def info(self) -> dict[str, Any]:
        spec = self.state.get("model") or {}
        return {
            "name": spec.get("name"),
            "arguments": spec.get("kwargs", {}),
            "parameters": count_params(self.model),
            "dataset": self.state.get("dataset", "mnist"),
            "classes": self.classes,
            # Names only: where the file lives on the server is nobody else's business.
            "run": Path(self.state["path"]).parent.name,
            "checkpoint": Path(self.state["path"]).name,
            "epoch": self.state.get("epoch"),
            "test_accuracy": self.test_accuracy,
            "device": str(self.device),
            "digit_gate": {"calibrated": self.gate.calibrated,
                           "description": self.gate.describe()},
        }


def run_test_accuracy(path: Path) -> float | None:
    """The test accuracy a finished run's summary.json records, or None (unknown) when there
    is none or it cannot be believed: a missing, damaged or odd summary is no reason not to
    serve the model."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SUMMARY_BYTES + 1)
        summary = json.loads(data) if len(data) <= MAX_SUMMARY_BYTES else None
    except (OSError, ValueError, RecursionError):  # ValueError: bad JSON, bad UTF-8
        return None
    value = summary.get("test_accuracy") if isinstance(summary, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and 0 <= value <= 1 else None


def first_blocks(activations: list[Activation],
                 count: int = FEATURE_LAYERS) -> list[tuple[Activation, Activation]]:
    """For each of the first `count` Conv2d layers: (the conv, the last output of its block).

    A block is the conv and what follows it at the same shape (BatchNorm, the nonlinearity),
    stopping at pooling or the next conv - so the map shown is what the next layer sees.
    """
    blocks: list[tuple[Activation, Activation]] = []
    for act in activations:
        if act.kind == "Conv2d":
            if len(blocks) == count:
                break
            blocks.append((act, act))
        elif blocks and act.output.shape == blocks[-1][0].output.shape:
            blocks[-1] = (blocks[-1][0], act)
        elif blocks and act.output.ndim == 4 and len(blocks) == count:
            break
    return blocks


@functools.cache
def _colormap() -> np.ndarray:
    import matplotlib

    return (matplotlib.colormaps["inferno"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def render_layer(conv: Activation, act: Activation, max_channels: int = MAX_CHANNELS,
                 gap: int = 1) -> dict[str, Any]:
    """The channels of one (1, C, H, W) output as a grid of coloured tiles, in one PNG.

    Scaled by the layer's largest magnitude (not per channel), so that a weak channel looks
    weak; negative values (before a ReLU) are shown by magnitude."""
    maps = act.output[0, :max_channels].abs().numpy()
    channels, h, w = maps.shape
    top = float(maps.max())
    levels = np.rint(maps / top * 255).astype(np.uint8) if top > 0 else np.zeros_like(
        maps, dtype=np.uint8)
    cols = min(channels, 8 if channels <= 32 else 16)
    rows = -(-channels // cols)
    grid = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap, 3), 255, dtype=np.uint8)
    colours = _colormap()[levels]  # (C, H, W, 3)
    for c in range(channels):
        r, k = divmod(c, cols)
        grid[r * (h + gap) : r * (h + gap) + h, k * (w + gap) : k * (w + gap) + w] = colours[c]
    buffer = io.BytesIO()
    Image.fromarray(grid, "RGB").save(buffer, format="PNG")
    total = act.output.shape[1]
    return {
        "name": act.name, "kind": act.kind, "conv": conv.name,
        "shape": list(act.output.shape[1:]), "shown": channels, "channels": total,
        "rows": rows, "cols": cols, "max": top,
        "image": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode(),
    }
