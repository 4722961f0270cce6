"""Say "not a digit": a gate on the logits that accepts digits and rejects everything else.

A classifier trained on digits alone has no way to answer "none of these": a letter, a star
or a tap on the drawing page still gets a confident digit. Runs trained with outlier exposure
(`mnistlab.notadigit.exposure`, on in the default recipe) learn to spread their softmax over all
ten classes for non-digits, and store in the checkpoint a threshold calibrated on the
validation split (never the test set):

    state["digit_gate"] = {"score": "energy", "threshold": 3.1, "val_accept": 0.995, ...}

`DigitGate.from_state(state)` reads it back. A checkpoint without one (older runs, models
trained without outlier exposure, NumPy runs) gets the fallback: max softmax probability at
least FALLBACK_THRESHOLD, with `calibrated=False` so that callers can say the answer is a
rough one. docs/not-a-digit.md has the design and the measurements.

    gate = DigitGate.from_state(state)
    logits = model(normalizer(images))
    is_digit = gate.accepts(logits)          # bool, one per image
    how_digit_like = gate.scores(logits)     # higher = more digit-like
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from mnistlab.errors import MnistlabError

SCORES = ("energy", "max_softmax")
# Uncalibrated checkpoints: accept when the top class has at least this softmax probability.
# A model trained without outlier exposure gives most non-digits a confident class anyway,
# so this catches only the clearly ambiguous ones (docs/not-a-digit.md has the figures).
FALLBACK_SCORE = "max_softmax"
FALLBACK_THRESHOLD = 0.5


def score_logits(logits: torch.Tensor, score: str) -> torch.Tensor:
    """(N, C) logits -> (N,) float32 scores, higher = more digit-like.

    energy: logsumexp of the logits (the negative free energy of Liu et al. 2020); large when
        some class fires strongly. max_softmax: the top class's probability (Hendrycks and
        Gimpel 2017).
    """
    if logits.ndim != 2:
        raise MnistlabError(f"digit gate: expected (N, classes) logits, got shape "
                            f"{tuple(logits.shape)}")
    logits = logits.detach().float()
    if score == "energy":
        return torch.logsumexp(logits, dim=1)
    if score == "max_softmax":
        return logits.softmax(1).amax(1)
    raise MnistlabError(f"digit gate: unknown score '{score}' (known: {', '.join(SCORES)})")


@dataclass(frozen=True)
class DigitGate:
    """Accept an image as a digit when `score(logits) >= threshold`."""

    score: str = FALLBACK_SCORE
    threshold: float = FALLBACK_THRESHOLD
    calibrated: bool = False  # True: threshold fitted on this model's validation split
    val_accept: float | None = None  # share of validation digits accepted at calibration
    info: dict[str, Any] = field(default_factory=dict, compare=False)  # how it was made

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise MnistlabError(f"digit gate: unknown score '{self.score}' "
                                f"(known: {', '.join(SCORES)})")
        if not math.isfinite(self.threshold):
            raise MnistlabError(f"digit gate: threshold must be a finite number, "
                                f"got {self.threshold}")

    @classmethod
    def fallback(cls) -> DigitGate:
        return cls()

    @classmethod
    def from_state(cls, state: Mapping[str, Any] | None) -> DigitGate:
        """The gate stored in a checkpoint's state (`load_model(...)[2]`), else the fallback."""
        stored = (state or {}).get("digit_gate")
        if stored is None:
            return cls.fallback()
        where = (state or {}).get("path", "checkpoint")
        if not isinstance(stored, Mapping):
            raise MnistlabError(f"{where}: digit_gate must be a dict, got "
                                f"{type(stored).__name__}")
        try:
            threshold = float(stored["threshold"])
            score = str(stored["score"])
        except (KeyError, TypeError, ValueError) as e:
            raise MnistlabError(f"{where}: digit_gate is damaged ({type(e).__name__}: {e})"
                                ) from None
        val_accept = stored.get("val_accept")
        info = {k: v for k, v in stored.items()
                if k not in ("score", "threshold", "val_accept", "calibrated")}
        return cls(score=score, threshold=threshold,
                   calibrated=bool(stored.get("calibrated", True)),
                   val_accept=None if val_accept is None else float(val_accept), info=info)

    @classmethod
    def calibrate(cls, val_logits: torch.Tensor, accept: float = 0.995,
                  score: str = "energy", **info: Any) -> DigitGate:
        """Fit the threshold so that a share `accept` of these (validation) digits pass."""
        if not 0.0 < accept <= 1.0:
            raise MnistlabError(f"digit gate: accept must be in (0, 1], got {accept}")
        scores = score_logits(val_logits, score)
        if len(scores) == 0:
            raise MnistlabError("digit gate: cannot calibrate on an empty validation split "
                                "(--val-size 0)")
        if not torch.isfinite(scores).all():
            raise MnistlabError("digit gate: validation logits are not finite; the model "
                                "diverged")
        # The (1 - accept) quantile: the lowest score that still counts as a digit.
        threshold = float(torch.quantile(scores.double(), 1.0 - accept,
                                         interpolation="lower"))
        val_accept = float((scores >= threshold).double().mean())
        return cls(score=score, threshold=threshold, calibrated=True, val_accept=val_accept,
                   info=dict(info))

    def to_state(self) -> dict[str, Any]:
        """Plain numbers and strings (loads with weights_only=True; fits in JSON)."""
        return {**self.info, "score": self.score, "threshold": self.threshold,
                "calibrated": self.calibrated, "val_accept": self.val_accept}

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, classes) logits -> (N,) scores on the CPU, higher = more digit-like."""
        return score_logits(logits, self.score).cpu()

    def accepts(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, classes) logits -> (N,) bool: True where the image counts as a digit."""
        return self.scores(logits) >= self.threshold

    def describe(self) -> str:
        """One line for people, e.g. for `mnistlab predict --explain`."""
        if not self.calibrated:
            return (f"not-a-digit gate: uncalibrated fallback (top softmax probability >= "
                    f"{self.threshold:g}); this run was trained without outlier exposure")
        kept = f", keeps {self.val_accept:.1%} of validation digits" if self.val_accept else ""
        return f"not-a-digit gate: {self.score} >= {self.threshold:.4g}{kept}"
