"""The training loop: fit on the training split, select on validation, report on test.

`train(config)` is the library entry point; the CLI only builds the config. The loop shows a
progress line with loss, accuracy, learning rate and images per second; writes the run
directory as it goes; and on Ctrl-C saves `last.pt` at the exact batch it reached, so that
`--resume` continues as if nothing had happened.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.allocator import keep_freed_memory
from mnistlab.checkpoint import (
    load_checkpoint,
    load_model,
    load_weights,
    save_checkpoint,
)
from mnistlab.data.dataset import DigitData, load_dataset
from mnistlab.data.pipeline import Augment, Batcher, Normalizer, Split
from mnistlab.device import autocast, synchronize
from mnistlab.errors import MnistlabError
from mnistlab.evaluate import EvalResult, evaluate_batches
from mnistlab.models import create_model
from mnistlab.models.summary import count_params, summarize
from mnistlab.notadigit.exposure import setup_outliers  # reject: not a digit
from mnistlab.train import clock, distributed, threads
from mnistlab.train.config import TrainConfig
from mnistlab.train.ema import WeightAverage
from mnistlab.train.optim import build_optimizer, build_scheduler
from mnistlab.train.precision import choose_for_run, first_batch
from mnistlab.train.progress import Progress, format_eta
from mnistlab.train.result import TrainingInterrupted, TrainResult
from mnistlab.train.resume import ResumePlan, plan_resume
from mnistlab.train.runbook import RunBook, split_for_run
from mnistlab.train.rundir import RunDir, new_run_name
from mnistlab.train.schedule import apply_tail


class _HardInterrupt(KeyboardInterrupt):
    """A second Ctrl-C: stop at once, possibly mid-step, without overwriting last.pt."""


@dataclass
class StepInfo:
    """What a callback sees after every optimizer step."""

    epoch: int  # 0-based epoch in progress
    batch: int  # batches done in this epoch
    step: int  # optimizer steps done in the whole run
    loss: torch.Tensor  # this batch's loss (a tensor: reading it forces a sync)
    lr: float
    model: nn.Module


class Callback:
    """Hooks into the loop, e.g. TensorBoard logging; every method is optional."""

    def on_train_start(self, trainer: Trainer) -> None: ...
    def on_step(self, info: StepInfo) -> None: ...
    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None: ...
    def on_train_end(self, trainer: Trainer, summary: dict[str, Any]) -> None: ...


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # Strict, as --help says: an operation with no deterministic implementation raises
        # (a one-line error from Trainer.fit), never a warning lost in the output.
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class Trainer:
    def __init__(self, config: TrainConfig, data: DigitData | None = None,
                 resume: str | os.PathLike[str] | ResumePlan | None = None,
                 callbacks: Sequence[Callback] = (), stream: TextIO | None = None,
                 max_epochs: int | None = None, resume_epochs: int | None = None) -> None:
        """`max_epochs` stops this session early (e.g. to test resume); the schedule still
        spans `config.epochs`. `resume_epochs`: with `resume`, extend the run to that many
        epochs (see train.resume)."""
        plan = (resume if isinstance(resume, ResumePlan) or resume is None
                else plan_resume(resume, config, resume_epochs))
        self.config = plan.config if plan is not None else config
        self.callbacks = list(callbacks)
        self.max_epochs = max_epochs
        # speed: where the time before training goes (summary.json "startup_seconds")
        self.startup: dict[str, float] = {}
        began = time.perf_counter()
        command_start = clock.command_start()
        if command_start is not None:
            self.startup["before_trainer"] = began - command_start  # Python, imports, parsing
        self._setup_runtime(stream)
        self.run_name = self._check_run_name(plan)  # before any work: refuse a used name
        self._timed("data", self._setup_data, data)
        self._timed("model_threads_precision", self._setup_model, plan)
        self._timed("batches", self._setup_batches)
        self._setup_optimizer()
        self._open_run(plan)
        self.startup["trainer"] = time.perf_counter() - began

    def _timed(self, phase: str, setup: Any, *args: Any) -> None:
        start = time.perf_counter()
        setup(*args)
        self.startup[phase] = time.perf_counter() - start

    # ---- set-up, in order --------------------------------------------------------------
    def _setup_runtime(self, stream: TextIO | None) -> None:
        """Processes (DDP), device, threads, seeds and precision."""
        config = self.config
        self.dist, self.device = distributed.setup(config.device)
        self.progress = Progress(stream or sys.stdout, enabled=self.dist.is_main)
        # speed: freed activations reused from the heap, not faulted in again (allocator.py)
        self.progress.print(keep_freed_memory())
        if config.threads:
            torch.set_num_threads(config.threads)  # before anything runs; measured later
        seed_everything(config.seed, config.deterministic)

    def _check_run_name(self, plan: ResumePlan | None) -> str | None:
        """The new run's name, refused at once if its folder is in use (before the data,
        the measurements or the doctor's work)."""
        if plan is not None:
            return None
        config = self.config
        # Every rank uses rank 0's run name (a timestamp could differ); only rank 0 writes.
        name = distributed.broadcast_object(
            config.name or new_run_name(config.model, config.dataset), self.dist)
        if self.dist.is_main:
            RunDir.check_new(config.runs_dir, name)
        return name

    def _setup_data(self, data: DigitData | None) -> None:
        """The data set, its train/validation/test splits and the training normaliser."""
        config = self.config
        if data is not None and data.name != config.dataset:
            raise MnistlabError(f"the run trains on {config.dataset}, but the data given is "
                                f"{data.name}")
        self.data = data or load_dataset(config.dataset, config.data_dir, config.download)
        self.train_split, self.val_split = split_for_run(config, self.data)
        self.test_split = Split(self.data.test_images, self.data.test_labels)
        self.normalizer = Normalizer.fit(self.train_split.images)

    def _setup_model(self, plan: ResumePlan | None = None) -> None:
        """The model on its device, in channels-last where it has convolutions, DDP-wrapped."""
        config = self.config
        self.model = create_model(config.model, **config.model_args).to(self.device)
        # speed: the thread count by timing real steps at 1 and N threads (train/threads.py),
        # then precision and layout at that count; the thread count adapts while training
        self.thread_choice = threads.choose_for_run(
            config, self.model, first_batch(config, self.train_split.images,
                                            self.train_split.labels, self.normalizer,
                                            self.device, self.dist),
            self.device, self.dist, self.progress.print)
        self.thread_control = threads.ThreadController.from_choice(
            self.thread_choice, say=self.progress.print)
        # speed: bf16 and channels-last by measuring real steps, unless forced (train/precision.py)
        self.bf16, self.channels_last = choose_for_run(
            config, self.model, self.train_split.images, self.train_split.labels,
            self.normalizer, self.device, self.dist, self.progress.print,
            plan.state if plan is not None else None)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.net: nn.Module = self.model
        if self.dist.enabled:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def _setup_batches(self) -> None:
        config = self.config
        self.train_batches = Batcher(
            self.train_split, distributed.per_rank_batch(config.batch_size, self.dist),
            self.normalizer, shuffle=True, seed=config.seed,
            augment=Augment(elastic=config.elastic) if config.augment else None,
            drop_last=self.dist.enabled,
            device=self.device, shard=(self.dist.rank, self.dist.world_size))
        # Built once: each holds its split on the device for every epoch's evaluation.
        self.val_batches, self.test_batches = (
            Batcher(split, config.eval_batch_size, self.normalizer, device=self.device)
            for split in (self.val_split, self.test_split))
        self.steps_per_epoch = 1 if config.dry_run else len(self.train_batches)
        self.outliers = setup_outliers(self)  # reject: non-digit negatives, or None

    def _setup_optimizer(self) -> None:
        """Optimizer, schedule and the counters a checkpoint restores."""
        self.optimizer = build_optimizer(self.model, self.config)
        self.scheduler = build_scheduler(self.optimizer, self.config, self.steps_per_epoch)
        # --ema: the average of the weights, made from the model as it trains (device, layout)
        self.ema = WeightAverage(self.model, self.config.ema) if self.config.ema else None
        self.epoch, self.batch, self.step = 0, 0, 0
        # loss sum, correct, count; kept on the device so that a step never waits for a copy
        self.epoch_stats = torch.zeros(3, dtype=self._stats_dtype(), device=self.device)
        self.stop_requested = False  # set by the first Ctrl-C (see _sigint_deferred)
        self.train_seconds = 0.0  # over every session of the run
        self.wall_seconds_before = 0.0  # wall time of the sessions before this one
        self.train_seconds_before = 0.0  # training time of the sessions before this one
        self.epoch_start: float | None = None  # when the epoch in progress started
        self.wall_start: float | None = None  # when this session's fit() started

    def _open_run(self, plan: ResumePlan | None) -> None:
        """The run directory: a new one, or the resumed run's with its state restored."""
        config = self.config
        if plan is not None:
            self.run = RunDir.open(plan.run_dir)
        else:
            name = self.run_name
            self.run = (RunDir.create(config.runs_dir, name) if self.dist.is_main
                        else RunDir(Path(config.runs_dir) / name))
        self.book = RunBook(self.run, config, self.progress, self.data.name,
                            is_main=self.dist.is_main)
        if plan is not None:
            self._restore(plan.state)
            if plan.extended_from is not None:
                self.progress.print(plan.extension_note())
                if self.dist.is_main:
                    plan.record_extension()

    @property
    def best(self) -> dict[str, Any]:
        """The best validation accuracy so far and its epoch (kept by the run's book)."""
        return self.book.best

    @best.setter
    def best(self, value: dict[str, Any]) -> None:
        self.book.best = value

    @property
    def eval_model(self) -> nn.Module:
        """What is validated, chosen, tested and saved: the average with --ema, else the model."""
        return self.ema.module if self.ema is not None else self.model

    # ---- state -------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "model": self.model.mnistlab_spec,
            # With --ema the average, so that every command that loads a checkpoint uses it;
            # the trained weights are in "ema" for --resume.
            "state_dict": self.eval_model.state_dict(),
            "normalizer": {"mean": self.normalizer.mean, "std": self.normalizer.std},
            "dataset": self.data.name,
            "classes": list(self.data.classes),
            "config": self.config.to_dict(),
            "bf16": self.bf16, "channels_last": self.channels_last,
            "epoch": self.epoch, "batch": self.batch, "step": self.step,
            "epoch_stats": self.epoch_stats.to("cpu", torch.float64, copy=True),
            "train_seconds": self.train_seconds, "wall_seconds": self.wall_seconds(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "rng": rng_state(self.device),
            "best": dict(self.best),
        }
        if self.ema is not None:
            state["ema"] = self.ema.state()
        return state

    def _restore(self, state: dict[str, Any]) -> None:
        spec = state["model"]
        if spec["name"] != self.config.model:
            raise MnistlabError(f"{state['path']}: checkpoint is for model '{spec['name']}', "
                                f"not '{self.config.model}'")
        if self.ema is not None:
            self.ema.load_state(state["ema"], state["state_dict"], state["path"])
        else:
            load_weights(self.model, state["state_dict"], state["path"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.batch, self.step = state["epoch"], state["batch"], state["step"]
        self.epoch_stats = state["epoch_stats"].to(self.device, self._stats_dtype(), copy=True)
        self.train_seconds = self.train_seconds_before = state.get("train_seconds", 0.0)
        self.wall_seconds_before = state.get("wall_seconds", self.train_seconds)
        self.best = dict(state["best"])
        set_rng_state(state["rng"], self.device)
        self.run.truncate_after(self.step)

    def save(self, name: str) -> Path:
        path = self.run.file(name)
        if self.dist.is_main:
            save_checkpoint(path, self.state())
        return path

    # ---- the loop ----------------------------------------------------------------------
    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.outliers is not None:  # reject: append this step's non-digits
            x = self.outliers.extend(x, self.epoch, self.batch)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.bf16):
            logits = self.net(x)
            if self.outliers is not None:  # reject: the digits' logits; the non-digits' loss
                logits, outlier_loss = self.outliers.split_loss(logits, len(y))
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.config.label_smoothing)
            if self.outliers is not None:  # reject
                loss = loss + outlier_loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        in_tail = apply_tail(self.optimizer, self.config, self.step, self.steps_per_epoch)
        self.optimizer.step()
        if self.scheduler is not None and not in_tail:
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update()
        with torch.no_grad():  # accumulate on the device; read back once per epoch
            stats = self.epoch_stats
            stats[0] += loss.detach() * len(y)
            stats[1] += (logits.argmax(1) == y).sum()
            stats[2] += len(y)
        return loss

    def _stats_dtype(self) -> torch.dtype:
        return torch.float32 if self.device.type == "mps" else torch.float64  # MPS has no fp64

    def evaluate(self, batches: Batcher, model: nn.Module | None = None) -> EvalResult:
        return evaluate_batches(self.eval_model if model is None else model, batches, self.bf16,
                                max_batches=1 if self.config.dry_run else None)

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def run_epoch(self) -> dict[str, Any]:
        cfg, epoch = self.config, self.epoch
        self.model.train()
        start_batch, images_seen = self.batch, 0
        start = self.epoch_start = time.perf_counter()
        batches = self.train_batches.epoch(epoch, start=start_batch)
        control = self.thread_control
        if control is not None:
            control.begin()  # the evaluation before this epoch is not a slow step
        for x, y in batches:
            loss = self.train_step(x, y)
            self.batch += 1
            self.step += 1
            images_seen += len(y)
            if control is not None:
                control.tick(len(y))  # speed: may change torch's thread count
            if self.progress.due():  # a terminal's status line, or a plain line every 5 s
                self.progress.update(self._status(loss, images_seen, start_batch, start))
            if self.callbacks:  # nothing per step in the hot loop unless someone listens
                info = StepInfo(epoch, self.batch, self.step, loss, self.lr(), self.model)
                for cb in self.callbacks:
                    cb.on_step(info)
            if self.step % cfg.log_interval == 0:
                elapsed = time.perf_counter() - start
                rate = images_seen * self.dist.world_size / max(elapsed, 1e-9)
                loss_value = float(loss.detach())
                self.run.log({"kind": "step", "epoch": epoch + 1, "step": self.step,
                              "train_loss": loss_value, "lr": self.lr(), "images_per_s": rate})
            if self.stop_requested:  # a Ctrl-C arrived: stop on this step boundary
                raise KeyboardInterrupt
            if self.batch >= self.steps_per_epoch:
                break
        synchronize(self.device)
        train_time = time.perf_counter() - start
        self.train_seconds += train_time
        self.epoch_start = None
        stats = distributed.all_reduce_sum(self.epoch_stats.clone(), self.dist)
        loss_sum, correct, count = stats.tolist()
        row: dict[str, Any] = {"kind": "epoch", "epoch": epoch + 1, "step": self.step,
                               "train_loss": loss_sum / max(count, 1),
                               "train_acc": correct / max(count, 1), "lr": self.lr(),
                               "images_per_s": images_seen * self.dist.world_size
                               / max(train_time, 1e-9),
                               "seconds": train_time}
        if len(self.val_split):
            val = self.evaluate(self.val_batches)
            row.update(val_loss=val.loss, val_acc=val.accuracy)
        if cfg.track_test:
            test = self.evaluate(self.test_batches)
            row.update(test_loss=test.loss, test_acc=test.accuracy)
        self.epoch, self.batch = epoch + 1, 0
        self.epoch_stats.zero_()
        return row

    def _status(self, loss: torch.Tensor, images_seen: int, start_batch: int,
                start: float) -> str:
        """The status line: where the run is, its speed and threads, and the time left
        (training only, at this epoch's speed so far)."""
        elapsed = max(time.perf_counter() - start, 1e-9)
        rate = images_seen * self.dist.world_size / elapsed
        steps_left = (self._stop_epoch() - self.epoch - 1) * self.steps_per_epoch + (
            self.steps_per_epoch - self.batch)
        eta = steps_left * elapsed / max(self.batch - start_batch, 1)
        return (f"epoch {self.epoch + 1}/{self.config.epochs} step {self.batch}/"
                f"{self.steps_per_epoch} loss {float(loss.detach()):.4f} lr {self.lr():.2g} "
                f"{rate:,.0f} img/s {threads.plural(torch.get_num_threads(), 'thread')} "
                f"ETA {format_eta(eta)}")

    def _stop_epoch(self) -> int:
        cfg = self.config
        return cfg.epochs if self.max_epochs is None else min(cfg.epochs, self.max_epochs)

    @contextlib.contextmanager
    def _sigint_deferred(self):
        """Turn the first Ctrl-C into a request to stop on the next step boundary, so that
        last.pt is an exact point of the run; a second Ctrl-C stops at once."""
        self.stop_requested = False
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers can only be set from the main thread
            return

        def request_stop(_signum: int, _frame: Any) -> None:
            if self.stop_requested:
                raise _HardInterrupt
            self.stop_requested = True  # a step takes milliseconds: no need to say so

        previous = signal.signal(signal.SIGINT, request_stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def fit(self) -> TrainResult:
        try:
            return self._fit()
        except TrainingInterrupted:
            raise
        except BaseException:
            # A run that failed before its first checkpoint leaves no half-made folder.
            if self.dist.is_main:
                self.run.discard()
            raise

    def _fit(self) -> TrainResult:
        cfg = self.config
        self._announce()
        for cb in self.callbacks:
            cb.on_train_start(self)
        self.wall_start = time.perf_counter()
        stop_at = self._stop_epoch()
        early_stop = False
        try:
            with self._sigint_deferred():
                while self.epoch < stop_at and not early_stop:
                    early_stop = self._epoch_and_checkpoints()
                    if self.stop_requested:
                        raise KeyboardInterrupt
        except _HardInterrupt:
            distributed.teardown(self.dist)
            raise TrainingInterrupted(
                f"stopped at once at epoch {self.epoch + 1}, batch {self.batch}; "
                f"{self.run.file('last.pt')} holds the end of epoch {self.epoch}") from None
        except KeyboardInterrupt:
            if self.epoch_start is not None:  # the part of the epoch done counts too
                self.train_seconds += time.perf_counter() - self.epoch_start
            path = self.save("last.pt")
            if self.dist.is_main:
                self.run.flush_metrics()
            distributed.teardown(self.dist)
            raise TrainingInterrupted(
                f"interrupted at epoch {self.epoch + 1}, batch {self.batch}: saved {path}; "
                f"continue with: mnistlab train --resume {self.run.path}") from None
        except RuntimeError as e:
            if "deterministic" not in str(e):
                raise
            distributed.teardown(self.dist)
            first = str(e).strip().splitlines()[0]
            raise MnistlabError(f"--deterministic: {first[:200]}; train without "
                                "--deterministic, or on another device") from None
        if self.epoch < cfg.epochs and not early_stop:  # paused by max_epochs
            distributed.teardown(self.dist)
            self.progress.print(f"paused after epoch {self.epoch}/{cfg.epochs}; continue with: "
                                f"mnistlab train --resume {self.run.path}")
            return TrainResult(self.run.path, {}, cfg, self.eval_model)
        summary = self.finish(self.wall_seconds())
        distributed.teardown(self.dist)
        return TrainResult(self.run.path, summary, cfg, self.model)

    def wall_seconds(self) -> float:
        """Wall time of the whole run: every session before this one, and this one so far."""
        start = self.wall_start
        return self.wall_seconds_before + (time.perf_counter() - start if start else 0.0)

    def _epoch_and_checkpoints(self) -> bool:
        """One epoch, its log line, best.pt and last.pt; True when early stopping says stop."""
        row = self.run_epoch()
        # Rank 0 decides (BatchNorm buffers may differ slightly on other ranks), so that
        # every rank saves and stops early at the same epoch.
        score = distributed.broadcast_object(row.get("val_acc"), self.dist)
        self.book.end_epoch(row, self.epoch, lambda: self.save("last.pt"), score)
        for cb in self.callbacks:
            cb.on_epoch_end(self, row)
        return self.book.early_stop(self.epoch)

    def finish(self, wall_seconds: float) -> dict[str, Any]:
        """Test the best checkpoint (chosen on validation, never on test) and write the summary."""
        raw = self._raw_weights() if self.ema is not None else None
        best_path = self.book.best_path
        if best_path.is_file() and self.best["epoch"] != self.epoch:
            load_weights(self.model, load_checkpoint(best_path)["state_dict"], str(best_path))
        elif self.ema is not None:
            self.ema.copy_to(self.model)
        # From here on self.model holds the chosen weights (the average with --ema).
        test = self.evaluate(self.test_batches, self.model)
        if self.outliers is not None:  # reject: calibrate the not-a-digit gate on validation
            self.outliers.calibrate(self)
        summary = self.book.finish(
            test, backend="torch", model_kwargs=self.model.mnistlab_spec["kwargs"],
            parameters=count_params(self.model), epochs_run=self.epoch, steps=self.step,
            images=self.step * self.train_batches.batch_size * self.dist.world_size,
            train_seconds=self.train_seconds, wall_seconds=wall_seconds,
            device=str(self.device), bf16=self.bf16, world_size=self.dist.world_size,
            has_val=len(self.val_split) > 0, startup_seconds=self._startup_seconds(),
            threads=self._threads_record(), train_seconds_before=self.train_seconds_before)
        if raw is not None:
            summary = self._record_raw_weights(summary, raw)
        if self.outliers is not None:  # reject: the gate's figures into summary/config.json
            summary = self.outliers.record(self, summary)
        for cb in self.callbacks:
            cb.on_train_end(self, summary)
        return summary

    def _raw_weights(self) -> dict[str, Any]:
        """--ema: the trained (not averaged) weights at the end of training, on validation
        and test, to set beside the average's figures (never used to choose anything)."""
        val = self.evaluate(self.val_batches, self.model) if len(self.val_split) else None
        test = self.evaluate(self.test_batches, self.model)
        return {"epoch": self.epoch, "val_acc": val.accuracy if val else None,
                "val_loss": val.loss if val else None, "test_acc": test.accuracy,
                "test_loss": test.loss}

    def _record_raw_weights(self, summary: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
        """summary.json with the average's decay and the trained weights' figures beside."""
        summary = {**summary, "ema": {"decay": self.config.ema, "updates": self.ema.updates},
                   "raw_weights": raw}
        if self.dist.is_main:
            self.run.write_summary(summary)
        val = f"validation {raw['val_acc']:.2%}, " if raw["val_acc"] is not None else ""
        self.progress.print(f"without EMA (the trained weights after epoch {raw['epoch']}): "
                            f"{val}test {raw['test_acc']:.2%}; reported above: the "
                            f"average (EMA {self.config.ema})")
        return summary

    def _startup_seconds(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self.startup.items()}

    def _threads_record(self) -> dict[str, Any]:
        """What summary.json says about threads: the start-up choice and every change."""
        record = self.thread_choice.to_dict()
        if self.thread_control is not None:
            record.update(self.thread_control.summary())
        else:
            record["final"] = torch.get_num_threads()
        return record

    def _announce(self) -> None:
        if not self.dist.is_main:
            return
        cfg = self.config
        resolved = {"backend": "torch", "device": str(self.device), "bf16": self.bf16,
                    "channels_last": self.channels_last, "threads": torch.get_num_threads(),
                    "threads_choice": self.thread_choice.describe().removeprefix("threads: "),
                    "world_size": self.dist.world_size,
                    "normalizer": {"mean": self.normalizer.mean, "std": self.normalizer.std},
                    "train_size": len(self.train_split), "val_size": len(self.val_split),
                    "test_size": len(self.test_split), "steps_per_epoch": self.steps_per_epoch,
                    "batch_size": cfg.batch_size}
        title = f"model {cfg.model} {self.model.mnistlab_spec['kwargs']}"
        self.book.start(resolved, self.data.md5s(), summarize(self.model, title=title),
                        fresh=self.epoch == 0 and self.batch == 0)
        if self.ema is not None:
            self.progress.print(f"EMA {cfg.ema}: an average of the weights is validated, "
                                "chosen, tested and saved (the trained weights' figures "
                                "follow at the end)")
        if self.epoch or self.batch:
            self.progress.print(f"resuming at epoch {self.epoch + 1}, batch {self.batch} "
                                f"(step {self.step})")


def train(config: TrainConfig, data: DigitData | None = None,
          resume: str | os.PathLike[str] | ResumePlan | None = None,
          callbacks: Sequence[Callback] = (), stream: TextIO | None = None,
          max_epochs: int | None = None, resume_epochs: int | None = None) -> TrainResult:
    """Train a model as `config` says and return the run's summary. With `resume`, continue
    that run with its own options (`config` gives only the device and threads), extended to
    `resume_epochs` epochs if given (see train.resume)."""
    from mnistlab.train.members import resume_config, train_members

    ensemble = (resume_config(resume, config, resume_epochs)
                if resume is not None and not isinstance(resume, ResumePlan) else None)
    if ensemble is not None:
        if max_epochs is not None:
            raise MnistlabError(f"{resume}: an ensemble run is resumed as planned (max_epochs "
                                "is not supported for an ensemble)")
        return train_members(train, ensemble, data, callbacks, stream, resume=resume)
    if resume is None and config.members > 1:
        if max_epochs is not None:
            raise MnistlabError("--members: max_epochs is not supported for an ensemble")
        return train_members(train, config, data, callbacks, stream)
    if resume is not None:
        plan = (resume if isinstance(resume, ResumePlan)
                else plan_resume(resume, config, resume_epochs))
        if plan.finished:  # nothing to train: say so, and write nothing
            Progress(stream or sys.stdout, enabled=True).print(plan.finished_message())
            model, _, _ = load_model(plan.run_dir)
            return TrainResult(plan.run_dir, plan.summary(), plan.config, model)
        return Trainer(plan.config, data, plan, callbacks, stream, max_epochs).fit()
    if config.backend == "numpy":
        from mnistlab.train.numpy_backend import train_numpy

        if callbacks:
            raise MnistlabError("the numpy backend takes no training callbacks "
                                "(e.g. --tensorboard)")
        return train_numpy(config, data=data, stream=stream)
    return Trainer(config, data, None, callbacks, stream, max_epochs).fit()
