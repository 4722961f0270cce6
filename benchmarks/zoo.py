"""Train every zoo model on the real MNIST with one stated recipe; write a markdown table.

    flock /tmp/mnistlab-cpu.lock python benchmarks/zoo.py --models lenet5 --budget 280
    python benchmarks/zoo.py --table-only          # rebuild the table from finished runs

Recipe for every model (`RECIPE` below): SGD, Nesterov momentum 0.9, peak lr 0.1 with a
one-cycle schedule, weight decay 5e-4, batch 128, no augmentation, seed 0; 55,000 training
images, model selection on the 5,000 held-out validation images, test accuracy of the
best-validation checkpoint. 5 epochs each (`EPOCHS`).

A shared machine's CPU lock should be held a few minutes at a time, so `--budget SECONDS`
pauses training (last.pt, exactly as Ctrl-C does) once that much time has passed; running the
same command again resumes it exactly where it stopped, and training seconds add up.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from mnistlab.atomic import write_text
from mnistlab.models import MODELS, get_entry
from mnistlab.train import Callback, StepInfo, TrainingInterrupted, resolve_config, train
from mnistlab.train.rundir import read_metrics

# The one recipe (the library's default optimiser settings at the time of measuring), pinned
# here so that tuning the library's defaults later does not silently change this table.
RECIPE = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True,
          "weight_decay": 5e-4, "schedule": "onecycle", "batch_size": 128, "augment": False,
          "label_smoothing": 0.0, "seed": 0, "val_size": 5000}
# Epochs per model: the same for all, as long as the whole table trains in about 15 minutes
# on a 2-core CPU; `--epochs` overrides it.
EPOCHS = dict.fromkeys(("mlp", "lenet5", "fast", "convnet-s2-small", "fullconv", "vgg-small",
                        "allconv-bn", "pytorch-example", "convnet-s2"), 5)
ROOT = Path(__file__).resolve().parent.parent


class Budget(Callback):
    """Press Ctrl-C for the user after `seconds` of this session."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def on_step(self, info: StepInfo) -> None:
        if time.monotonic() > self.deadline:
            raise KeyboardInterrupt


def train_model(name: str, epochs: int, runs: Path, budget: float | None) -> bool:
    """Train (or continue training) one model; True once its run is finished."""
    run = runs / name
    if (run / "summary.json").is_file():
        return True
    resume = run if (run / "last.pt").is_file() else None
    config = resolve_config(model=name, epochs=epochs, runs_dir=str(runs), name=name, **RECIPE)
    callbacks = [Budget(budget)] if budget else []
    try:
        train(config, resume=resume, callbacks=callbacks, stream=sys.stdout)
    except TrainingInterrupted as e:
        print(f"{name}: paused ({e}); run the same command again to continue")
        return False
    return True


def fastest_epoch_rate(run: Path) -> float:
    """Training images/s of the fastest epoch: other processes on a shared machine only ever
    slow an epoch down, so the fastest is the closest to what the model costs."""
    rows = read_metrics(run / "metrics.csv")
    return max(r["images_per_s"] for r in rows if r["kind"] == "epoch")


def table(runs: Path) -> str:
    rows = ["| model | parameters | epochs | best val. accuracy | test accuracy "
            "| training seconds | images/s (fastest epoch) |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for name in MODELS:
        path = runs / name / "summary.json"
        if not path.is_file():
            continue
        s = json.loads(path.read_text())
        test = s["test"]
        cfg = json.loads((runs / name / "config.json").read_text())
        other = {k: cfg[k] for k in RECIPE if cfg.get(k) != RECIPE[k]}
        note = f" (other recipe: {other})" if other else ""
        rows.append(f"| {name}{note} | {s['parameters']:,} | {s['epochs_run']} "
                    f"| {s['best_val_accuracy']:.2%} | {s['test_accuracy']:.2%} "
                    f"({test['correct']:,}/{test['total']:,}) | {s['train_seconds']:.0f} "
                    f"| {fastest_epoch_rate(runs / name):,.0f} |")
    first = next((runs / n / "config.json" for n in MODELS
                  if (runs / n / "config.json").is_file()), None)
    env = json.loads(first.read_text())["environment"] if first else {}
    bf16 = json.loads(first.read_text())["resolved"]["bf16"] if first else None
    head = [
        "# The model zoo on MNIST, measured here",
        "",
        "Every model trained with the same recipe (`benchmarks/zoo.py`): SGD with Nesterov "
        f"momentum {RECIPE['momentum']}, one-cycle learning rate peaking at {RECIPE['lr']}, "
        f"weight decay {RECIPE['weight_decay']}, batch {RECIPE['batch_size']}, no augmentation, "
        f"seed {RECIPE['seed']}; 55,000 training images, the best epoch chosen on 5,000 "
        "held-out validation images, then tested once on the 10,000 test images. "
        "Training seconds (the sum over epochs) exclude data loading and evaluation; they were "
        "measured while holding the shared CPU lock, one model at a time. Other work on a "
        "shared machine can still slow an epoch down, so the training images per second of "
        "each model's fastest epoch is given as the steadiest figure for comparing speed.",
        "",
        f"Machine: {env.get('processor', '?')}, {env.get('cpu_count', '?')} CPUs, "
        f"{env.get('torch_threads', '?')} torch threads, torch {env.get('torch', '?')}, "
        f"bf16 autocast {'on' if bf16 else 'off'}, {platform.system()}.",
        "",
    ]
    return "\n".join(head + rows) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated zoo names")
    p.add_argument("--epochs", type=int, default=None, help="override every model's epochs")
    p.add_argument("--budget", type=float, default=None,
                   help="pause after this many seconds (resume by running again)")
    p.add_argument("--runs-dir", default=str(ROOT / "runs" / "zoo"))
    p.add_argument("--out", default=str(ROOT / "docs" / "zoo-results.md"))
    p.add_argument("--table-only", action="store_true")
    args = p.parse_args()

    runs = Path(args.runs_dir)
    names = [get_entry(n.strip()).name for n in args.models.split(",") if n.strip()]
    finished = True
    if not args.table_only:
        torch.manual_seed(0)
        for name in names:
            finished &= train_model(name, args.epochs or EPOCHS.get(name, 5), runs, args.budget)
            if not finished:
                break
    text = table(runs)
    write_text(args.out, text)
    print(text)
    print(f"wrote {args.out}")
    return 0 if finished else 3


if __name__ == "__main__":
    sys.exit(main())
