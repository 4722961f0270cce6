"""`--members K`: train K copies of a model one after the other and save them as one ensemble.

Each member is a complete run of its own, in RUN/members/member-<i>/, with the run's options
but its own seed (seed + 1000 i: other initial weights, batch order and augmentation) and the
run's validation split (`split_seed`, else the run's seed), so that every member chooses its
best epoch on the same validation images, and the ensemble is validated on images none of its
members trained on. Then RUN/best.pt holds a `models.ensemble.Ensemble` of the members' best
checkpoints: its logits are the log of their mean softmax, so eval, predict, export and serve
read it as one model. RUN/summary.json has the ensemble's validation and test accuracy (test
reported, never used to choose) and every member's figures.

Ctrl-C in a member saves that member's last.pt; `mnistlab train --resume RUN` then keeps the
finished members, resumes the interrupted one exactly and trains the rest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import torch

from mnistlab.atomic import write_json
from mnistlab.checkpoint import load_model, save_checkpoint
from mnistlab.data.dataset import DigitData, load_dataset
from mnistlab.data.pipeline import Normalizer, Split
from mnistlab.device import resolve_device
from mnistlab.errors import MnistlabError
from mnistlab.evaluate import EvalResult, evaluate
from mnistlab.models import create_model
from mnistlab.text import plural
from mnistlab.train import clock, distributed
from mnistlab.train.config import TrainConfig
from mnistlab.train.progress import Progress, format_final_line
from mnistlab.train.result import TrainingInterrupted, TrainResult
from mnistlab.train.runbook import split_for_run
from mnistlab.train.rundir import RunDir, new_run_name, read_json

SEED_STEP = 1000  # member i trains with seed + SEED_STEP * i
MEMBERS_DIR = "members"


def member_name(i: int) -> str:
    return f"member-{i}"


def member_config(config: TrainConfig, run_dir: Path, i: int) -> TrainConfig:
    """Member i's own options: one model, its own seed, the run's validation split."""
    return dataclasses.replace(config, members=1, seed=config.seed + SEED_STEP * i,
                               split_seed=config.validation_seed,
                               runs_dir=str(run_dir / MEMBERS_DIR), name=member_name(i))


def ensemble_config(run: str | Path) -> TrainConfig | None:
    """The options of the ensemble run in folder `run`, or None when it is not one (a single
    run, a checkpoint file, a folder without config.json)."""
    path = Path(run) / "config.json"
    if not path.is_file():
        return None
    try:
        config = read_json(path)
    except MnistlabError:
        return None
    members = config.get("members", 1)
    if not isinstance(members, int) or isinstance(members, bool) or members <= 1:
        return None
    return TrainConfig.from_dict(config)


def resume_config(run: str | Path, config: TrainConfig,
                  epochs: int | None = None) -> TrainConfig | None:
    """The options that finish the ensemble run in folder `run` (its own, with `config`'s
    device and threads), or None when `run` is not an ensemble run. An ensemble is resumed as
    planned: `epochs` (--epochs N) is refused."""
    found = ensemble_config(run)
    if found is None:
        return None
    if epochs is not None:
        raise MnistlabError(f"--epochs: {run} is an ensemble run; it is resumed as planned, "
                            "without extending its members")
    return dataclasses.replace(found, device=config.device, threads=config.threads)


TrainOne = Callable[..., TrainResult]  # train.loop.train: (config, data, resume=, ...)


def train_members(train_one: TrainOne, config: TrainConfig, data: DigitData | None = None,
                  callbacks: Sequence[Any] = (), stream: TextIO | None = None,
                  resume: str | Path | None = None) -> TrainResult:
    """Train (or, with `resume`, finish: `config` is then `resume_config`'s) an ensemble run;
    see the module notes. `train_one` trains or resumes one member (train.loop.train, passed
    in: the loop calls this)."""
    out = Progress(stream or sys.stdout, enabled=True)
    if resume is not None:
        run = RunDir.open(resume)
    else:
        if distributed.from_environment().enabled:
            raise MnistlabError("--members: trains its members one after the other in one "
                                "process; run it without torchrun")
        run = RunDir.create(config.runs_dir, config.name or new_run_name(config.model,
                                                                         config.dataset))
        run.write_config(config.to_dict(), {"members_dir": MEMBERS_DIR})
    try:
        return _train_and_assemble(train_one, config, run, data, callbacks, stream, out)
    except (TrainingInterrupted, KeyboardInterrupt):
        raise
    except BaseException:
        if resume is None and not (run.path / MEMBERS_DIR).exists():
            run.discard()  # failed before any member began: leave no half-made folder
        raise


def _train_and_assemble(train_one: TrainOne, config: TrainConfig, run: RunDir,
                        data: DigitData | None, callbacks: Sequence[Any],
                        stream: TextIO | None, out: Progress) -> TrainResult:
    data = data or load_dataset(config.dataset, config.data_dir, config.download)
    results: list[TrainResult] = []
    for i in range(config.members):
        member_dir = run.path / MEMBERS_DIR / member_name(i)
        cfg = member_config(config, run.path, i)
        out.print(f"member {i + 1}/{config.members}: seed {cfg.seed}, validation split of "
                  f"seed {cfg.split_seed} -> {member_dir}/")
        # The command's start-up belongs to the first member's line only.
        try:
            with contextlib.nullcontext() if i == 0 else clock.unmarked():
                # a member with a last.pt (a resumed ensemble) is finished, or kept as it is
                resume_member = member_dir if (member_dir / "last.pt").is_file() else None
                results.append(train_one(cfg, data, resume=resume_member, callbacks=callbacks,
                                         stream=stream))
        except TrainingInterrupted as e:
            raise TrainingInterrupted(f"member {i + 1}/{config.members}: {e}; continue the "
                                      f"ensemble with: mnistlab train --resume {run.path}"
                                      ) from None
    return assemble(config, run, data, results, out)


def assemble(config: TrainConfig, run: RunDir, data: DigitData,
             results: Sequence[TrainResult], out: Progress) -> TrainResult:
    """The members' best checkpoints as one Ensemble: validated, tested, saved, summarised."""
    members = [load_model(r.run_dir) for r in results]  # best.pt, checked like any checkpoint
    _, normalizer, first = members[0]  # the members share the normaliser: one training split
    model = create_model("ensemble", base=config.model, members=len(members),
                         base_args=json.dumps(first["model"]["kwargs"], sort_keys=True))
    for member, (trained, _, _) in zip(model.members, members, strict=True):
        member.load_state_dict(trained.state_dict())
    device = resolve_device(config.device)
    model.to(device).eval()
    _, val_split = split_for_run(member_config(config, run.path, 0), data)
    test_split = Split(data.test_images, data.test_labels)
    bf16 = bool(first.get("bf16"))
    val = _evaluate(model, val_split, normalizer, bf16, device, config)
    test = _evaluate(model, test_split, normalizer, bf16, device, config)
    state = {"model": model.mnistlab_spec, "state_dict": model.state_dict(),
             "normalizer": first["normalizer"], "dataset": first.get("dataset"),
             "classes": first.get("classes"),
             "config": config.to_dict(), "bf16": bf16, "channels_last": False,
             "epoch": config.epochs, "members": [str(r.run_dir) for r in results]}
    save_checkpoint(run.file("best.pt"), state)
    summary = _summary(config, model, results, val, test, bf16)
    write_json(run.file("summary.json"), summary)
    if val is not None:
        each = ", ".join(f"{m['val_accuracy']:.2%}" for m in summary["members"]
                         if isinstance(m["val_accuracy"], float))
        out.print(f"ensemble of {plural(len(results), 'member')}: validation "
                  f"{val.accuracy:.2%} (the members alone: {each})")
    line = format_final_line(test.accuracy, test.correct, test.total, summary["train_seconds"],
                             summary["wall_seconds"], run.path, clock.command_seconds(),
                             clock.command_scope())
    out.print(f"DRY RUN (not a result): {line}" if config.dry_run else line)
    return TrainResult(run.path, summary, config, model)


def _evaluate(model: torch.nn.Module, split: Split, normalizer: Normalizer, bf16: bool,
              device: torch.device, config: TrainConfig) -> EvalResult | None:
    if len(split) == 0:
        return None
    return evaluate(model, split, normalizer, batch_size=config.eval_batch_size, device=device,
                    bf16=bf16, max_batches=1 if config.dry_run else None)


def _summary(config: TrainConfig, model: torch.nn.Module, results: Sequence[TrainResult],
             val: EvalResult | None, test: EvalResult, bf16: bool) -> dict[str, Any]:
    summaries = [r.summary for r in results]
    train_seconds = sum(s.get("train_seconds", 0.0) for s in summaries)
    images = sum(s.get("images_per_s", 0.0) * s.get("train_seconds", 0.0) for s in summaries)
    return {
        "dataset": summaries[0].get("dataset"), "model": "ensemble", "backend": "torch",
        "model_kwargs": model.mnistlab_spec["kwargs"],
        "parameters": sum(p.numel() for p in model.parameters()),
        "test": test.to_dict(), "test_accuracy": test.accuracy, "test_loss": test.loss,
        "best_val_accuracy": val.accuracy if val is not None else None,
        "best_epoch": None, "epochs_run": config.epochs,
        "steps": sum(s.get("steps", 0) for s in summaries),
        "train_seconds": train_seconds,
        "wall_seconds": sum(s.get("wall_seconds", 0.0) for s in summaries),
        "images_per_s": images / max(train_seconds, 1e-9),
        "device": summaries[0].get("device"), "bf16": bf16, "world_size": 1,
        "checkpoint": "best.pt", "dry_run": config.dry_run,
        "command_seconds": clock.command_seconds(), "startup_seconds": None, "threads": None,
        "members": [{"run": str(r.run_dir), "seed": r.config.seed,
                     "val_accuracy": r.summary.get("best_val_accuracy"),
                     "test_accuracy": r.summary.get("test_accuracy"),
                     "train_seconds": r.summary.get("train_seconds")} for r in results],
    }
