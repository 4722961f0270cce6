"""Test-time augmentation on a finished run: the mean of the softmax over shifted copies of each
image, against the plain prediction, on the run's own validation split and on test.

    python benchmarks/tta.py runs/best-seed0 [runs/best-seed1 ...]
    python benchmarks/tta.py runs/best-seed0 --trained     # a --ema run's trained weights

The lever is CHOSEN on the validation column and only REPORTED on test (docs/evaluation.md).
Shifts move the image by one pixel (torch.roll: MNIST's border is background, so nothing of the
digit wraps round); `shift4` adds the four one-pixel moves, `shift8` the eight neighbours.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_common import benchmark_threads, machine

from mnistlab.checkpoint import evaluation_bf16, load_model
from mnistlab.data.dataset import load_dataset
from mnistlab.data.pipeline import Batcher, Split
from mnistlab.evaluate import checkpoint_split, predict_logits
from mnistlab.train.threads import forward_step

VIEWS = {
    "none": [],
    "shift4": [(0, 1), (0, -1), (1, 0), (-1, 0)],
    "shift8": [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)],
}
BATCH = 1000


def accuracy(model: torch.nn.Module, split: Split, normalizer, shifts, bf16: bool) -> float:
    """The mean softmax over the image and its shifted copies, read as `mnistlab eval` reads
    a split (evaluate.predict_logits), one pass per view."""
    probs = None
    for dy, dx in [(0, 0), *shifts]:
        moved = Split(torch.roll(split.images, (dy, dx), dims=(1, 2)), split.labels)
        logits, labels = predict_logits(model, Batcher(moved, BATCH, normalizer), bf16)
        p = F.softmax(logits, 1)
        probs = p if probs is None else probs + p
    return float((probs.argmax(1) == labels).float().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: "
                   "measured on a batch, as mnistlab eval does)")
    p.add_argument("--trained", action="store_true",
                   help="a run trained with --ema: its trained weights (from last.pt), not "
                        "the average")
    args = p.parse_args()
    machine(print)
    data = load_dataset("mnist")
    print("| run | weights | split | " + " | ".join(VIEWS) + " |")
    print("|---|---|---|" + "---:|" * len(VIEWS))
    for run in args.runs:
        model, normalizer, state = load_model(run / ("last.pt" if args.trained else "best.pt"))
        weights = "best.pt"
        if args.trained:
            if "ema" not in state:
                sys.exit(f"{run}: not trained with --ema; drop --trained")
            model.load_state_dict(state["ema"]["trained_state_dict"])
            weights = "trained (last.pt)"
        bf16 = evaluation_bf16(state, torch.device("cpu"))  # as the run tested
        splits = {name: checkpoint_split(state, data, name) for name in ("val", "test")}
        views = sum(1 + len(shifts) for shifts in VIEWS.values())
        batches = views * sum(-(-len(s) // BATCH) for s in splits.values())
        first = normalizer(splits["test"].images[:BATCH])
        benchmark_threads(args.threads, forward_step(model, first, bf16=bf16), steps=batches,
                          say=lambda line: print(line, file=sys.stderr))
        for split, s in splits.items():
            cells = [f"{accuracy(model, s, normalizer, shifts, bf16):.2%}"
                     for shifts in VIEWS.values()]
            print(f"| {run.name} | {weights} | {split} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
