"""Read digits from pictures with one trained run: the one entry point for every caller.

    reader = Reader.from_run("runs/fast-strided-...")     # loads the model and its gate once
    reading = reader.read(image)                            # one digit: Prepared + Prediction
    number = reader.read_number(image)                      # a whole number, digit by digit

The command line (`mnistlab predict`), the server and the benchmarks all read through this
class, so a picture gets the same answer wherever it is sent: the same preprocessing, the
same not-a-digit gate (mnistlab.notadigit.gate) on every digit, single or part of a number,
and the same input checks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from mnistlab.checkpoint import checkpoint_note, load_model
from mnistlab.data.pipeline import Normalizer
from mnistlab.errors import MnistlabError
from mnistlab.notadigit.gate import DigitGate
from mnistlab.predict.predict import Prediction, judge, predict
from mnistlab.predict.preprocess import Prepared, analyse, prepare_ink
from mnistlab.predict.segment import DigitCrop, segment_digits, segment_ink

# Said of a single-digit picture that reads as a number whose every digit passes the gate:
# it is not one digit, and the user most likely meant --number.
MAX_HINT_DIGITS = 12  # more pieces than this are no number worth suggesting
NUMBER_HINT = "it reads as {count} digits side by side ({text}): read it as a number"


@dataclass(frozen=True)
class Reading:
    """One digit read from a picture: what the network saw and what it said."""

    prepared: Prepared
    prediction: Prediction

    @property
    def is_digit(self) -> bool:
        return bool(self.prediction.is_digit)


@dataclass(frozen=True)
class Looked:
    """A picture analysed once (`Reader.look`): its single-digit form and its digits."""

    prepared: Prepared
    crops: list[DigitCrop]


@dataclass(frozen=True)
class NumberReading:
    """A whole number read digit by digit, left to right. `is_number`: every digit passed
    the gate (a picture with no digit-like piece is no number); `reason` says why not."""

    crops: list[DigitCrop]
    predictions: list[Prediction]
    classes: Sequence[str]

    @property
    def text(self) -> str:
        return "".join(self.classes[p.label] for p in self.predictions)

    @property
    def is_number(self) -> bool:
        return bool(self.predictions) and all(p.is_digit for p in self.predictions)

    @property
    def reason(self) -> str | None:
        if not self.predictions:
            return "no digit found"
        refused = [f"digit {i + 1} ({p.reason})" for i, p in enumerate(self.predictions)
                   if not p.is_digit]
        return "not a digit: " + "; ".join(refused) if refused else None

    def to_dict(self) -> dict[str, Any]:
        """JSON: the text, is_number (and why not), and per digit its prediction (label,
        probability, is_digit, reason, ...) and box [x, y, width, height]."""
        out: dict[str, Any] = {"text": self.text, "is_number": self.is_number}
        if self.reason is not None:
            out["reason"] = self.reason
        out["digits"] = [{**p.to_dict(self.classes), "box": [int(v) for v in c.box]}
                         for c, p in zip(self.crops, self.predictions, strict=True)]
        return out


class Reader:
    """A trained model, its normaliser and its not-a-digit gate, loaded once."""

    def __init__(self, model: nn.Module, normalizer: Normalizer, state: dict[str, Any],
                 device: torch.device | str = "cpu", top_k: int = 3) -> None:
        if top_k < 1:
            raise MnistlabError(f"--top-k must be at least 1, got {top_k}")
        self.model, self.normalizer, self.state = model, normalizer, state
        self.device, self.top_k = torch.device(device), top_k
        self.classes = [str(c) for c in (state.get("classes") or range(10))]
        self.gate = DigitGate.from_state(state)

    @classmethod
    def from_run(cls, path: str | os.PathLike[str], device: torch.device | str = "cpu",
                 last: bool = False, top_k: int = 3) -> Reader:
        """A run folder or checkpoint file; `last` reads last.pt (and accepts a run that has
        no best.pt yet)."""
        model, normalizer, state = load_model(path, device, prefer="last.pt" if last
                                              else "best.pt", last_ok=last)
        return cls(model, normalizer, state, device, top_k)

    @property
    def note(self) -> str | None:
        """What the user should know about the checkpoint read (a fallback file, ...)."""
        return checkpoint_note(self.state)

    # ---- 28x28 arrays ----------------------------------------------------------------------
    def classify(self, arrays: np.ndarray | Sequence[np.ndarray],
                 problems: Sequence[Sequence[str]] | None = None) -> list[Prediction]:
        """uint8 (N, 28, 28) in MNIST form -> one judged Prediction each (gate + problems)."""
        if len(arrays) == 0:
            return []
        return predict(self.model, self.normalizer, np.stack(list(arrays)), self.device,
                       self.top_k, gate=self.gate,
                       problems=problems if problems is not None else [[] for _ in arrays])

    def judge(self, prediction: Prediction, logits: torch.Tensor,
              problems: Sequence[str]) -> Prediction:
        """is_digit for one prediction whose (1, classes) logits came from elsewhere (the
        server's feature-map pass), decided exactly as `classify` decides it."""
        return judge(prediction, problems, bool(self.gate.accepts(logits)[0]),
                     float(self.gate.scores(logits)[0]), self.gate.threshold)

    # ---- pictures --------------------------------------------------------------------------
    def read(self, image: Image.Image, denoise: bool = True) -> Reading:
        return self.read_many([image], denoise)[0]

    def read_many(self, images: Sequence[Image.Image], denoise: bool = True) -> list[Reading]:
        """One digit per picture, in one batched forward pass."""
        return self.read_looked([self.look(image, denoise) for image in images])

    def look(self, image: Image.Image, denoise: bool = True) -> Looked:
        """Analyse a picture once, for both readings: its single-digit MNIST form and the
        digits it holds side by side. Raises MnistlabError as `preprocess.prepare` does."""
        ink = analyse(image)
        prepared = prepare_ink(ink, image.size, denoise)
        try:
            crops = segment_ink(ink, image.size)
        except MnistlabError:  # too much ink to read as a number: no hint
            crops = []
        return Looked(prepared, crops)

    def read_looked(self, looked: Sequence[Looked]) -> list[Reading]:
        """`read_many` for pictures already analysed (`look`), e.g. to report a picture
        that cannot be analysed without losing the others. A picture that reads as a number
        of two or more accepted digits is not one digit, and its reason says to read it as
        a number."""
        problems = [[*seen.prepared.problems, *filter(None, [self._number_hint(seen.crops)])]
                    for seen in looked]
        predictions = self.classify([seen.prepared.array for seen in looked], problems)
        return [Reading(seen.prepared, prediction)
                for seen, prediction in zip(looked, predictions, strict=True)]

    def read_number(self, image: Image.Image, max_digits: int | None = None) -> NumberReading:
        """Every digit of a picture, left to right, each through the gate."""
        crops = segment_digits(image)
        if max_digits is not None and len(crops) > max_digits:
            raise MnistlabError(f"too many digits: {len(crops)} found, at most {max_digits} "
                                "are read in one picture")
        return NumberReading(crops, self.classify([c.array for c in crops]), self.classes)

    def _number_hint(self, crops: list[DigitCrop]) -> str | None:
        """NUMBER_HINT when the picture holds two or more digits that all pass the gate."""
        if not 2 <= len(crops) <= MAX_HINT_DIGITS:
            return None
        number = NumberReading(crops, self.classify([c.array for c in crops]), self.classes)
        if not number.is_number:
            return None
        return NUMBER_HINT.format(count=len(crops), text=number.text)
