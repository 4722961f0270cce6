"""`mnistlab train --backend numpy`: the NumPy MLP inside mnistlab's data pipeline and run folder.

The run directory matches a PyTorch run (config.json, metrics.csv, summary.json), with
`best.npz` / `last.npz` in place of `best.pt` / `last.pt`. Every other command reads those
through `npz_to_checkpoint`, which turns one into the equivalent PyTorch `mlp` checkpoint
in memory, so `eval`, `predict`, `plot`, `compare`, `report`, `serve` and `export` just work.

This module bridges to torch (the data pipeline is torch tensors); `mnistlab.scratch`
itself does not import it.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from mnistlab.errors import MnistlabError
from mnistlab.scratch.checkpoint import load_npz, save_npz
from mnistlab.scratch.convert import from_torch_state_dict, to_torch_state_dict
from mnistlab.scratch.network import MLP
from mnistlab.scratch.train import fit

NUMPY_SCHEDULES = ("cosine", "step", "none")


def _sizes(hidden: Any) -> tuple[int, ...]:
    from mnistlab.models.mlp import parse_hidden

    return (28 * 28, *parse_hidden(hidden), 10)


def _schedule(config: Any, steps_per_epoch: int) -> Any:
    """Map the run's schedule onto scratch.fit's: per-update multipliers of the base lr."""
    if config.schedule == "cosine":
        return "cosine"
    if config.schedule == "none":
        return "constant"
    if config.schedule == "step":  # StepLR semantics: x gamma every step_size epochs
        def step_schedule(step: int, _total: int) -> float:
            return config.gamma ** ((step // steps_per_epoch) // config.step_size)
        return step_schedule
    raise MnistlabError(f"--schedule {config.schedule}: the numpy backend supports "
                        f"{', '.join(NUMPY_SCHEDULES)}")


def _check_supported(config: Any) -> None:
    if config.optimizer != "sgd":
        raise MnistlabError(f"--optimizer {config.optimizer}: the numpy backend has SGD only")
    if config.model != "mlp":
        raise MnistlabError(f"--model {config.model}: the numpy backend trains an mlp only")
    unknown = sorted(set(config.model_args) - {"hidden", "activation"})
    if unknown:
        raise MnistlabError(f"the numpy backend's mlp takes hidden and activation, not "
                            f"{', '.join(unknown)}")
    unsupported = [name for name, on in (("augment", config.augment),
                                         ("label-smoothing", config.label_smoothing > 0),
                                         ("patience", config.patience is not None))
                   if on]
    if unsupported:
        raise MnistlabError(f"--{unsupported[0]}: not supported by the numpy backend")


def train_numpy(config: Any, data: Any = None, stream: TextIO | None = None) -> Any:
    """Train the NumPy MLP as `config` says; returns a TrainResult like the torch trainer."""
    import torch

    from mnistlab.data.dataset import load_dataset
    from mnistlab.data.pipeline import Normalizer, Split, train_val_split
    from mnistlab.evaluate import result_from_logits
    from mnistlab.train.loop import TrainResult
    from mnistlab.train.progress import Progress, format_epoch_line, format_final_line
    from mnistlab.train.rundir import RunDir, new_run_name

    _check_supported(config)
    wall_start = time.perf_counter()
    progress = Progress(stream or sys.stdout, enabled=True)
    data = data or load_dataset(config.dataset, config.data_dir, config.download)
    if config.val_size >= len(data.train_labels):
        raise MnistlabError(f"--val-size {config.val_size} leaves no training images")
    # The same split and normalisation as the PyTorch backend, so results compare directly.
    train_split, val_split = train_val_split(data.train_images, data.train_labels,
                                             config.val_size, config.seed)
    normalizer = Normalizer.fit(train_split.images)

    def rows(split: Split) -> tuple[np.ndarray, np.ndarray]:
        x = normalizer(split.images).reshape(len(split), -1).numpy()  # (N, 784) float32
        return x, split.labels.numpy()

    x_train, y_train = rows(train_split)
    if config.dry_run:  # one batch of training and one of evaluation, as with torch
        x_train, y_train = x_train[: config.batch_size], y_train[: config.batch_size]
        val_split = Split(val_split.images[: config.eval_batch_size],
                          val_split.labels[: config.eval_batch_size])
    x_val, y_val = rows(val_split)
    x_test, y_test = rows(Split(data.test_images, data.test_labels))

    hidden = config.model_args.get("hidden", "200,50")
    activation = config.model_args.get("activation", "relu")
    net = MLP(_sizes(hidden), activation=activation, init="he", seed=config.seed)
    batch = min(config.batch_size, len(x_train))
    steps_per_epoch = math.ceil(len(x_train) / batch)
    schedule = _schedule(config, steps_per_epoch)  # refuse before the run directory exists
    run = RunDir.create(config.runs_dir, config.name or new_run_name("numpy-mlp"))
    model_spec = {"name": "mlp", "kwargs": {"hidden": ",".join(map(str, net.sizes[1:-1])),
                                            "activation": activation}}
    extra = {"model": model_spec, "dataset": data.name, "classes": list(data.classes),
             "normalizer": {"mean": normalizer.mean, "std": normalizer.std},
             "config": config.to_dict()}
    run.write_config(config.to_dict(), {
        "resolved": {"backend": "numpy", "sizes": list(net.sizes), "device": "cpu (numpy)",
                     "normalizer": extra["normalizer"], "train_size": len(x_train),
                     "val_size": len(x_val), "test_size": len(x_test),
                     "steps_per_epoch": steps_per_epoch},
        "data_md5": data.md5s()})
    progress.print(f"numpy MLP {'-'.join(map(str, net.sizes))} ({activation}, He init), "
                   f"{net.n_params():,} parameters")
    progress.print(f"data {data.name}: train {len(x_train):,} / val {len(x_val):,} / "
                   f"test {len(x_test):,}; {steps_per_epoch} steps per epoch of {batch}")
    progress.print(f"sgd lr {config.lr} momentum {config.momentum} {config.schedule}, "
                   f"{config.epochs} epochs -> {run.path}/")

    best = {"val_acc": -1.0, "epoch": 0}
    train_seconds = 0.0

    def on_epoch(record: dict[str, Any]) -> None:
        nonlocal train_seconds
        train_seconds += record["seconds"]
        row = {"kind": "epoch", "step": record["epoch"] * steps_per_epoch, **record}
        run.log(row)
        progress.print(format_epoch_line(row, config.epochs))
        score = record["val_acc"] if record["val_acc"] is not None else record["train_acc"]
        if score > best["val_acc"]:
            best.update(val_acc=score, epoch=record["epoch"])
            save_npz(run.file("best.npz"), net, {**extra, "epoch": record["epoch"]})
        save_npz(run.file("last.npz"), net, {**extra, "epoch": record["epoch"]})
        run.flush_metrics()

    try:
        fit(net, x_train, y_train, x_val if len(x_val) else None, y_val,
            epochs=1 if config.dry_run else config.epochs, batch_size=batch, lr=config.lr,
            momentum=config.momentum, weight_decay=config.weight_decay,
            schedule=schedule, seed=config.seed, on_epoch=on_epoch)
    except KeyboardInterrupt:
        from mnistlab.train.loop import TrainingInterrupted

        run.flush_metrics()
        raise TrainingInterrupted(f"interrupted: the last finished epoch is in "
                                  f"{run.file('last.npz')}") from None

    best_net, _ = load_npz(run.file("best.npz"))
    logits = torch.from_numpy(best_net.logits(x_test).astype(np.float32))
    test = result_from_logits(logits, torch.from_numpy(y_test))
    wall = time.perf_counter() - wall_start
    summary = {
        "dataset": data.name, "model": "mlp", "backend": "numpy",
        "model_kwargs": model_spec["kwargs"], "parameters": net.n_params(),
        "test": test.to_dict(), "test_accuracy": test.accuracy, "test_loss": test.loss,
        "best_val_accuracy": best["val_acc"] if len(x_val) else None,
        "best_epoch": best["epoch"], "epochs_run": len(run.rows),
        "steps": len(run.rows) * steps_per_epoch, "train_seconds": train_seconds,
        "wall_seconds": wall,
        "images_per_s": len(run.rows) * len(x_train) / max(train_seconds, 1e-9),
        "device": "cpu (numpy)", "bf16": False, "world_size": 1, "checkpoint": "best.npz",
    }
    run.write_summary(summary)
    progress.print(format_final_line(test.accuracy, test.correct, test.total, train_seconds,
                                     wall, run.path))
    return TrainResult(run.path, summary, config, to_torch_model(best_net))


def npz_to_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A NumPy `.npz` checkpoint as an in-memory PyTorch `mlp` checkpoint dict (float32)."""
    from mnistlab.checkpoint import FORMAT, VERSION

    net, extra = load_npz(path)
    model = extra.get("model") or {"name": "mlp", "kwargs": {
        "hidden": ",".join(map(str, net.sizes[1:-1])), "activation": net.activation}}
    return {"format": FORMAT, "version": VERSION, "model": model,
            "state_dict": to_torch_state_dict(net.astype(np.float32)),
            "normalizer": extra.get("normalizer"), "dataset": extra.get("dataset", "mnist"),
            "classes": extra.get("classes", [str(d) for d in range(10)]),
            # NumPy computed in float32: evaluate the converted model the same way.
            "config": {**extra.get("config", {}), "bf16": "off"},
            "epoch": extra.get("epoch", 0),
            "path": str(path)}


def to_torch_model(net: MLP) -> Any:
    from mnistlab.models import create_model

    model = create_model("mlp", hidden=",".join(map(str, net.sizes[1:-1])),
                         activation=net.activation)
    model.load_state_dict(to_torch_state_dict(net.astype(np.float32)))
    return model.eval()


def checkpoint_to_npz(state: dict[str, Any], output: str | os.PathLike[str]) -> Path:
    """Write a PyTorch `mlp` checkpoint's weights as a NumPy `.npz` checkpoint."""
    spec = state.get("model", {})
    if spec.get("name") != "mlp":
        raise MnistlabError(f"{state.get('path')}: only an mlp converts to NumPy, "
                            f"this is '{spec.get('name')}'")
    activation = spec.get("kwargs", {}).get("activation", "relu")
    net = from_torch_state_dict(state["state_dict"], activation=activation)
    extra = {k: state[k] for k in ("model", "dataset", "classes", "normalizer", "config", "epoch")
             if k in state}
    save_npz(output, net, extra)
    return Path(output)
