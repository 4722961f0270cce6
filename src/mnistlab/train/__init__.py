"""Training: configuration, both backends' runs, checkpoints and the run directory.

`TrainConfig` and `resolve_config` import nothing heavy; the rest (torch) loads on first use,
so that `mnistlab --help` and the CLI's parsers stay fast.
"""

from __future__ import annotations

from typing import Any

from mnistlab.train.config import RECIPES, TrainConfig, resolve_config

_FROM_LOOP = ("Callback", "StepInfo", "Trainer", "train")
_FROM_RESULT = ("TrainResult", "TrainingInterrupted")

__all__ = ["RECIPES", "Callback", "StepInfo", "TrainConfig", "TrainResult", "Trainer",
           "TrainingInterrupted", "resolve_config", "train"]


def __getattr__(name: str) -> Any:
    if name in _FROM_LOOP:
        from mnistlab.train import loop

        return getattr(loop, name)
    if name in _FROM_RESULT:
        from mnistlab.train import result

        return getattr(result, name)
    raise AttributeError(f"module 'mnistlab.train' has no attribute {name!r}")
