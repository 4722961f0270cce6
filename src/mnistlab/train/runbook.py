"""A run's bookkeeping, defined once for every backend: its start, each epoch's end, its finish.

The PyTorch `Trainer` and the NumPy backend (`train.numpy_backend`) both train through a
`RunBook`, so their run directories hold the same files, written at the same moments:

    start         config.json (the options, a `resolved` block, the data's MD5s) and the
                  header lines: the model, the data, the device and schedule
    end of epoch  the metrics row, the epoch line, last checkpoint, best checkpoint when the
                  validation accuracy improved, metrics.csv flushed; early stopping decided
    finish        summary.json with `SUMMARY_KEYS`, and the final line

A backend supplies only what differs: how to save its checkpoint, and its numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mnistlab.atomic import copy_file
from mnistlab.data.pipeline import Split, train_val_split
from mnistlab.errors import MnistlabError
from mnistlab.train import clock
from mnistlab.train.config import TrainConfig
from mnistlab.train.progress import Progress, format_epoch_line, format_final_line
from mnistlab.train.rundir import RunDir
from mnistlab.train.threads import plural

# Every summary.json has exactly these keys, whichever backend trained the model.
SUMMARY_KEYS = ("dataset", "model", "backend", "model_kwargs", "parameters", "test",
                "test_accuracy", "test_loss", "best_val_accuracy", "best_epoch", "epochs_run",
                "steps", "train_seconds", "wall_seconds", "images_per_s", "device", "bf16",
                "world_size", "checkpoint", "dry_run", "command_seconds", "startup_seconds",
                "threads")

# The `resolved` block of config.json: what the options turned into on this machine.
RESOLVED_KEYS = ("backend", "device", "bf16", "channels_last", "threads", "threads_choice",
                 "world_size", "normalizer", "train_size", "val_size", "test_size",
                 "steps_per_epoch")


def split_for_run(config: TrainConfig, data: Any) -> tuple[Split, Split]:
    """(train, validation) of a run: `val_size` images held out by `config.validation_seed`
    (`split_seed`, else `seed`), drawn by
    data.split, the same for both backends."""
    if config.val_size >= len(data.train_labels):
        raise MnistlabError(f"--val-size {config.val_size} leaves no training images "
                            f"(the training set has {len(data.train_labels)})")
    train_size = len(data.train_labels) - config.val_size
    if config.batch_size > train_size:
        raise MnistlabError(f"--batch-size {config.batch_size} is larger than the training split "
                            f"({train_size:,} images after --val-size {config.val_size})")
    return train_val_split(data.train_images, data.train_labels, config.val_size,
                           config.validation_seed)


class RunBook:
    """Writes and prints what a run leaves behind; `best` survives resume via checkpoints."""

    def __init__(self, run: RunDir, config: TrainConfig, progress: Progress, dataset: str, *,
                 suffix: str = ".pt", is_main: bool = True) -> None:
        self.run, self.config, self.progress, self.dataset = run, config, progress, dataset
        self.suffix, self.is_main = suffix, is_main  # ".npz" for NumPy checkpoints
        self.best: dict[str, Any] = {"val_acc": -1.0, "epoch": 0}

    # ---- start ---------------------------------------------------------------------------
    def start(self, resolved: dict[str, Any], data_md5: dict[str, str], model_text: str,
              *, fresh: bool) -> None:
        """config.json for a new run (a resumed one keeps its own), then the header lines."""
        cfg = self.config
        if fresh and self.is_main:
            self.run.write_config(cfg.to_dict(), {
                "resolved": {k: resolved.get(k) for k in RESOLVED_KEYS},
                "data_md5": data_md5})
        p = self.progress
        p.print(model_text)
        p.print(f"data {self.dataset}: train {resolved['train_size']:,} / "
                f"val {resolved['val_size']:,} / test {resolved['test_size']:,}; "
                f"{resolved['steps_per_epoch']} steps per epoch of {resolved['batch_size']}")
        threads = f", {plural(resolved['threads'], 'thread')}" if resolved.get("threads") else ""
        p.print(f"device {resolved['device']}, bf16 {'on' if resolved['bf16'] else 'off'}"
                f"{threads}, {cfg.optimizer} lr {cfg.lr} {cfg.schedule}, "
                f"{plural(cfg.epochs, 'epoch')} -> {self.run.path}/")
        if cfg.dry_run:
            p.print("DRY RUN: one batch of training and one of evaluation per epoch; "
                    "the run is marked dry_run and is not a result")

    # ---- end of an epoch -------------------------------------------------------------------
    def end_epoch(self, row: dict[str, Any], epoch: int, save_last: Callable[[], Path],
                  score: float | None = None) -> bool:
        """Log and print `row`, save last (and best, if at least as good, or always without a
        validation split: then True). `epoch` is the number of finished epochs; `score`
        overrides the row's validation accuracy (distributed runs broadcast rank 0's). Then
        ask `early_stop(epoch)`."""
        self.run.log(row)
        self.progress.print(format_epoch_line(row, self.config.epochs))
        if score is None:
            score = row.get("val_acc")
        if score is None:
            # No validation split (--val-size 0): nothing to choose on, so each epoch replaces
            # the one before. Choosing on training accuracy would choose on the data trained on.
            improved = kept = True
        else:
            # A tie goes to the later epoch: it trained longer, at the smaller learning rate
            # a decaying schedule ends on, and equal validation accuracy is no evidence
            # against it (5,000 validation images resolve 0.02%, and at 99.5% ties are
            # common). Early stopping still counts from the last strict improvement.
            improved = score > self.best["val_acc"]
            kept = score >= self.best["val_acc"]
        if kept:
            self.best = {"val_acc": -1.0 if score is None else score, "epoch": epoch,
                         "improved": epoch if improved else self.last_improvement}
        last = save_last()  # after `best` moved: the checkpoint records it
        if self.is_main:
            if kept:
                copy_file(last, self.best_path)  # the same state: serialised once
            self.run.flush_metrics()
        return kept

    @property
    def last_improvement(self) -> int:
        """The epoch of the last strict gain in validation accuracy (checkpoints written
        before ties went to the later epoch have only "epoch", which was that)."""
        return int(self.best.get("improved", self.best["epoch"]))

    def early_stop(self, epoch: int) -> bool:
        # Epochs since the best one, from the checkpointed `best`: survives resume.
        patience = self.config.patience
        if patience and epoch - self.last_improvement >= patience:
            self.progress.print(f"early stop: no better validation accuracy for "
                                f"{patience} epoch(s)")
            return True
        return False

    @property
    def best_path(self) -> Path:
        return self.run.file("best" + self.suffix)

    # ---- finish ------------------------------------------------------------------------
    def finish(self, test: Any, *, backend: str, model_kwargs: dict[str, Any], parameters: int,
               epochs_run: int, steps: int, images: int, train_seconds: float,
               wall_seconds: float, device: str, bf16: bool, world_size: int = 1,
               has_val: bool = True, startup_seconds: dict[str, float] | None = None,
               threads: dict[str, Any] | None = None,
               train_seconds_before: float = 0.0) -> dict[str, Any]:
        """summary.json from the test result of the best checkpoint; prints the final line.
        `images`: training images seen in all sessions (for images/s); `train_seconds` is
        theirs too, `train_seconds_before` that of the sessions before this one. `startup_seconds`:
        where this command's time before training went; `threads`: what was chosen and
        changed (train.threads)."""
        cfg = self.config
        command_seconds = clock.command_seconds()  # None unless the command line marked it
        summary = {
            "dataset": self.dataset, "model": cfg.model, "backend": backend,
            "model_kwargs": model_kwargs, "parameters": parameters,
            "test": test.to_dict(), "test_accuracy": test.accuracy, "test_loss": test.loss,
            "best_val_accuracy": self.best["val_acc"] if has_val else None,
            "best_epoch": self.best["epoch"], "epochs_run": epochs_run, "steps": steps,
            "train_seconds": train_seconds, "wall_seconds": wall_seconds,
            "images_per_s": images / max(train_seconds, 1e-9),
            "device": device, "bf16": bf16, "world_size": world_size,
            "checkpoint": self.best_path.name, "dry_run": cfg.dry_run,
            "command_seconds": command_seconds, "startup_seconds": startup_seconds,
            "threads": threads,
        }
        assert tuple(summary) == SUMMARY_KEYS
        if self.is_main:
            self.run.write_summary(summary)
        line = format_final_line(test.accuracy, test.correct, test.total, train_seconds,
                                 wall_seconds, self.run.path, command_seconds,
                                 clock.command_scope(), startup_seconds,
                                 train_seconds_before)
        self.progress.print(f"DRY RUN (not a result): {line}" if cfg.dry_run else line)
        return summary
