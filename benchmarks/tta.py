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
from benchmark_common import machine

from mnistlab.checkpoint import evaluation_bf16, load_model
from mnistlab.data.dataset import load_dataset
from mnistlab.device import autocast
from mnistlab.evaluate import checkpoint_split

VIEWS = {
    "none": [],
    "shift4": [(0, 1), (0, -1), (1, 0), (-1, 0)],
    "shift8": [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)],
}


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, shifts, bf16: bool,
             batch: int = 1000) -> float:
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            xb = x[i:i + batch]
            with autocast(torch.device("cpu"), bf16):
                p = F.softmax(model(xb).float(), 1)
                for dy, dx in shifts:
                    p += F.softmax(model(torch.roll(xb, (dy, dx), dims=(2, 3))).float(), 1)
            correct += int((p.argmax(1) == y[i:i + batch]).sum())
    return correct / len(y)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
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
        model.eval()
        bf16 = evaluation_bf16(state, torch.device("cpu"))  # as the run tested
        for split in ("val", "test"):
            s = checkpoint_split(state, data, split)
            x = normalizer(s.images)
            cells = [f"{accuracy(model, x, s.labels, shifts, bf16):.2%}"
                     for shifts in VIEWS.values()]
            print(f"| {run.name} | {weights} | {split} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
