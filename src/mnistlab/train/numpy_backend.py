"""`mnistlab train --backend numpy`: the NumPy MLP (mnistlab.scratch) as a mnistlab run.

The data, split and normalisation are the PyTorch backend's; the run directory is written by
the same `RunBook` (config.json, metrics.csv, summary.json with the same keys), with
`best.npz` / `last.npz` in place of `.pt` (read by every other command through
`checkpoint_npz`). Options the NumPy network cannot honour are refused before anything is
written, never accepted and ignored.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from mnistlab.checkpoint_npz import mlp_spec, to_torch_model
from mnistlab.data.dataset import DigitData, load_dataset
from mnistlab.data.pipeline import Normalizer, Split
from mnistlab.errors import MnistlabError
from mnistlab.evaluate import result_from_logits
from mnistlab.models.mlp import parse_hidden
from mnistlab.scratch.checkpoint import load_npz, save_npz
from mnistlab.scratch.network import MLP
from mnistlab.scratch.train import DEFAULT_RECIPE, evaluate, fit
from mnistlab.train.config import TrainConfig
from mnistlab.train.progress import Progress, format_eta
from mnistlab.train.result import TrainingInterrupted, TrainResult
from mnistlab.train.runbook import RunBook, split_for_run
from mnistlab.train.rundir import RunDir, new_run_name

NUMPY_SCHEDULES = ("cosine", "step", "none")


def check_supported(config: TrainConfig) -> None:
    """Refuse, in one line, every option the NumPy backend would otherwise ignore."""
    if config.ema:  # first: a moving average is a torch-trainer feature whatever the rest
        raise MnistlabError(f"--ema {config.ema}: not supported by the numpy backend (the "
                            "torch trainer only)")
    if config.members > 1:
        raise MnistlabError(f"--members {config.members}: not supported by the numpy backend "
                            "(the torch trainer only)")
    if config.optimizer != "sgd":
        raise MnistlabError(f"--optimizer {config.optimizer}: the numpy backend has SGD only")
    if config.model != "mlp":
        raise MnistlabError(f"--model {config.model}: the numpy backend trains an mlp only")
    unknown = sorted(set(config.model_args) - {"hidden", "activation"})
    if unknown:
        raise MnistlabError(f"the numpy backend's mlp takes hidden and activation, not "
                            f"{', '.join(unknown)}")
    if config.schedule not in NUMPY_SCHEDULES:
        raise MnistlabError(f"--schedule {config.schedule}: the numpy backend supports "
                            f"{', '.join(NUMPY_SCHEDULES)}")
    refusals = [
        (config.augment, "--augment", "no augmentation in NumPy"),
        (config.label_smoothing > 0, "--label-smoothing", "plain cross-entropy only"),
        (config.nesterov and config.momentum > 0, "--nesterov",
         "the numpy SGD has plain momentum only; use --no-nesterov"),
        (config.device not in ("auto", "cpu"), f"--device {config.device}",
         "NumPy runs on the CPU only; use --device cpu or auto"),
        (config.bf16 == "on", "--bf16 on", "NumPy computes in float32; use --bf16 off"),
        (config.channels_last, "--channels-last", "the MLP has no image layout to change; "
         "use --no-channels-last"),
        (config.threads is not None, f"--threads {config.threads}",
         "NumPy's BLAS threads are fixed when it starts: set OMP_NUM_THREADS (or "
         "OPENBLAS_NUM_THREADS) before the command instead"),
    ]
    for refused, option, why in refusals:
        if refused:
            raise MnistlabError(f"{option}: not supported by the numpy backend ({why})")


def _schedule(config: TrainConfig, steps_per_epoch: int) -> Any:
    """The run's schedule as scratch.fit's: a name, or per-update multipliers of the lr."""
    if config.schedule == "step":  # StepLR semantics: x gamma every step_size epochs
        def step_schedule(step: int, _total: int) -> float:
            return config.gamma ** ((step // steps_per_epoch) // config.step_size)
        return step_schedule
    return "constant" if config.schedule == "none" else config.schedule


def _rows(split: Split, normalizer: Normalizer) -> tuple[np.ndarray, np.ndarray]:
    x = normalizer(split.images).flatten(1).numpy()  # (N, 784) float32, N = 0 too
    return x, split.labels.numpy()


def _matrices(config: TrainConfig, data: DigitData) -> tuple[dict[str, Any], Normalizer]:
    """x/y of train, val and test as (N, 784) float32 rows and labels: the PyTorch backend's
    split and normalisation, so that results compare directly."""
    train_split, val_split = split_for_run(config, data)
    normalizer = Normalizer.fit(train_split.images)
    if config.dry_run:  # one batch of training and one of evaluation, as with torch
        train_split, val_split = (Split(s.images[:n], s.labels[:n]) for s, n in (
            (train_split, config.batch_size), (val_split, config.eval_batch_size)))
    splits = {"train": train_split, "val": val_split,
              "test": Split(data.test_images, data.test_labels)}
    return {name: _rows(split, normalizer) for name, split in splits.items()}, normalizer


def _network(config: TrainConfig, n_inputs: int) -> MLP:
    arch = DEFAULT_RECIPE["arch"]
    hidden = parse_hidden(config.model_args.get("hidden", arch["sizes"][1:-1]))
    return MLP((n_inputs, *hidden, 10), init=arch["init"], seed=config.seed,
               activation=config.model_args.get("activation", arch["activation"]))


def train_numpy(config: TrainConfig, data: DigitData | None = None,
                stream: TextIO | None = None) -> Any:
    """Train the NumPy MLP as `config` says; returns a TrainResult like the torch trainer."""
    check_supported(config)
    wall_start = time.perf_counter()
    progress = Progress(stream or sys.stdout, enabled=True)
    name = config.name or new_run_name("numpy-mlp", data.name if data else config.dataset)
    RunDir.check_new(config.runs_dir, name)  # before any work: refuse a used name
    data = data or load_dataset(config.dataset, config.data_dir, config.download)
    xy, normalizer = _matrices(config, data)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = xy["train"], xy["val"], xy["test"]
    net = _network(config, x_train.shape[1])
    batch = min(config.batch_size, len(x_train))
    steps_per_epoch = math.ceil(len(x_train) / batch)
    run = RunDir.create(config.runs_dir, name)
    book = RunBook(run, config, progress, data.name, suffix=".npz")
    norm = {"mean": normalizer.mean, "std": normalizer.std}
    extra = {"model": mlp_spec(net), "dataset": data.name, "classes": list(data.classes),
             "normalizer": norm, "config": config.to_dict()}
    book.start({"backend": "numpy", "device": "cpu (numpy)", "bf16": False,
                "channels_last": False, "threads": None, "world_size": 1, "normalizer": norm,
                "train_size": len(x_train), "val_size": len(x_val), "test_size": len(x_test),
                "steps_per_epoch": steps_per_epoch, "batch_size": batch}, data.md5s(),
               f"numpy MLP {'-'.join(map(str, net.sizes))} ({net.activation}, {net.init} "
               f"init), {net.n_params():,} parameters", fresh=True)
    if config.deterministic:
        progress.print("deterministic: NumPy training is deterministic given --seed "
                       "(one thread order, seeded shuffles and initialisation)")
    train_seconds, last_lr = 0.0, config.lr

    total_steps = (1 if config.dry_run else config.epochs) * steps_per_epoch
    fit_start = time.perf_counter()

    def on_step(step: int, loss: float, lr: float) -> None:
        nonlocal last_lr
        last_lr = lr
        if progress.due():  # a terminal's status line, or a plain line every 5 s when piped
            elapsed = time.perf_counter() - fit_start  # (evaluation included: a rough ETA)
            progress.update(f"epoch {(step - 1) // steps_per_epoch + 1}/{config.epochs} step "
                            f"{(step - 1) % steps_per_epoch + 1}/{steps_per_epoch} loss "
                            f"{loss:.4f} lr {lr:.2g} ETA "
                            f"{format_eta((total_steps - step) * elapsed / max(step, 1))}")
        if step % config.log_interval == 0:
            run.log({"kind": "step", "epoch": (step - 1) // steps_per_epoch + 1, "step": step,
                     "train_loss": loss, "lr": lr})

    def on_epoch(record: dict[str, Any]) -> bool:
        nonlocal train_seconds
        train_seconds += record["seconds"]
        # lr: the rate of the epoch's last update (fit reports its first), as torch rows do
        row = {"kind": "epoch", "step": record["epoch"] * steps_per_epoch, **record,
               "lr": last_lr}
        if config.track_test:  # for curves only: selection stays on validation
            row["test_loss"], row["test_acc"] = evaluate(net, x_test, y_test)

        def save_last() -> Path:
            save_npz(run.file("last.npz"), net, {**extra, "epoch": record["epoch"]})
            return run.file("last.npz")

        book.end_epoch(row, record["epoch"], save_last)
        return book.early_stop(record["epoch"])

    try:
        history = fit(net, x_train, y_train, x_val if len(x_val) else None, y_val,
                      epochs=1 if config.dry_run else config.epochs, batch_size=batch,
                      lr=config.lr, momentum=config.momentum,
                      weight_decay=config.weight_decay,
                      schedule=_schedule(config, steps_per_epoch), seed=config.seed,
                      on_epoch=on_epoch, on_step=on_step)
    except KeyboardInterrupt:
        run.flush_metrics()
        raise TrainingInterrupted(f"interrupted: the last finished epoch is in "
                                  f"{run.file('last.npz')}") from None

    best_net, _ = load_npz(book.best_path)
    logits = torch.from_numpy(best_net.logits(x_test).astype(np.float32))
    summary = book.finish(
        result_from_logits(logits, torch.from_numpy(y_test)), backend="numpy",
        model_kwargs=mlp_spec(net)["kwargs"], parameters=net.n_params(),
        epochs_run=len(history), steps=len(history) * steps_per_epoch,
        images=len(history) * len(x_train), train_seconds=train_seconds,
        wall_seconds=time.perf_counter() - wall_start, device="cpu (numpy)", bf16=False,
        has_val=len(x_val) > 0)
    return TrainResult(run.path, summary, config, to_torch_model(best_net))
