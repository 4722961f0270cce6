"""`mnistlab train --tensorboard`: live curves in TensorBoard, in `RUN/tensorboard/`.

Logs, every `log_interval` steps, the training loss and the learning rate; every epoch, the
epoch's metrics (accuracy, validation and test loss, images/s); at the start a grid of
training images (as the model sees them, before normalisation) and the configuration; at
the end the test accuracy. Needs the optional `tensorboard` package
(`pip install 'mnistlab[tensorboard]'`); then `tensorboard --logdir runs`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mnistlab.errors import MnistlabError
from mnistlab.train.loop import Callback, StepInfo

SAMPLE_IMAGES = 64


def _summary_writer_class():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises it when the tensorboard package is missing
        raise MnistlabError("--tensorboard needs the tensorboard package: "
                            "pip install 'mnistlab[tensorboard]' (or: pip install tensorboard)"
                            ) from None
    return SummaryWriter


def how_to_open(log_dir: Path) -> str:
    """Where the logs are and the command that shows them (TensorBoard is a separate server
    that reads the folder; it serves http://localhost:6006 by default)."""
    return (f"TensorBoard logs in {log_dir}; to watch them: tensorboard --logdir {log_dir} "
            "and open http://localhost:6006")


class TensorBoardCallback(Callback):
    """Write TensorBoard event files for a training run. `log_dir` defaults to
    `RUN/tensorboard`; `every` to the run's `log_interval`."""

    def __init__(self, log_dir: str | os.PathLike[str] | None = None,
                 every: int | None = None) -> None:
        self._writer_class = _summary_writer_class()  # fail now, not after data loading
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.every = every
        self.writer = None

    def on_train_start(self, trainer) -> None:
        if not trainer.dist.is_main:
            return
        self.log_dir = self.log_dir or trainer.run.path / "tensorboard"
        self.every = self.every or trainer.config.log_interval
        self.writer = self._writer_class(log_dir=str(self.log_dir))
        trainer.progress.print(how_to_open(self.log_dir))
        images = trainer.train_split.images[:SAMPLE_IMAGES]
        self.writer.add_images("data/training samples", images.unsqueeze(1).float() / 255.0,
                               global_step=trainer.step, dataformats="NCHW")
        self.writer.add_text("config", "```\n" + json.dumps(trainer.config.to_dict(), indent=2,
                                                            default=str) + "\n```")

    def on_step(self, info: StepInfo) -> None:
        if self.writer is None or info.step % self.every:
            return
        self.writer.add_scalar("train/loss", float(info.loss.detach()), info.step)
        self.writer.add_scalar("train/learning rate", info.lr, info.step)

    def on_epoch_end(self, trainer, row: dict[str, Any]) -> None:
        if self.writer is None:
            return
        step = row["step"]
        for key, tag in (("train_loss", "epoch/train loss"), ("train_acc", "epoch/train accuracy"),
                         ("val_loss", "epoch/val loss"), ("val_acc", "epoch/val accuracy"),
                         ("test_loss", "epoch/test loss"), ("test_acc", "epoch/test accuracy"),
                         ("images_per_s", "speed/images per s")):
            if row.get(key) is not None:
                self.writer.add_scalar(tag, row[key], step)
        self.writer.flush()

    def on_train_end(self, trainer, summary: dict[str, Any]) -> None:
        if self.writer is None:
            return
        self.writer.add_scalar("test/accuracy", summary["test_accuracy"], trainer.step)
        self.writer.add_scalar("test/loss", summary["test_loss"], trainer.step)
        self.writer.close()
        self.writer = None
        trainer.progress.print(how_to_open(self.log_dir))  # the first one has scrolled away
