"""Training: configuration, optimisers, the loop, checkpoints and the run directory."""

from mnistlab.train.config import RECIPES, TrainConfig, resolve_config
from mnistlab.train.loop import Callback, StepInfo, Trainer, TrainingInterrupted, TrainResult, train

__all__ = ["RECIPES", "Callback", "StepInfo", "TrainConfig", "TrainResult", "Trainer",
           "TrainingInterrupted", "resolve_config", "train"]
