"""What a training run returns, and how it ends when interrupted: shared by both backends."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from mnistlab.errors import MnistlabError
from mnistlab.train.config import TrainConfig


class TrainingInterrupted(MnistlabError):
    """Ctrl-C during training: the state was saved; exit status 130 like any SIGINT."""

    exit_code = 130


@dataclass
class TrainResult:
    run_dir: Path
    summary: dict[str, Any]  # summary.json ({} for a run paused before its end)
    config: TrainConfig
    model: nn.Module = field(repr=False)
