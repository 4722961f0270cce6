"""Should `--recipe best` end with a fit on all 60,000 training images? Judged on validation.

A final fit on every training image (`--val-size 0`) cannot be judged on the images it trains
on, so this measures the step before it: the recipe trained on 50,000 images against 55,000,
both scored on the same 5,000 validation images of each seed, which neither run trains on
(`--val-size 10000` holds out the 5,000 images that `--val-size 5000` does and 5,000 more:
data.split draws one permutation per seed). If 5,000 more images still help at this scale,
the final fit's 5,000 are expected to help as well. Every run takes about the number of
optimiser steps the final fit takes (10,318 = 22 epochs of 469), so the comparison is of
data, not of training length:

    55,000 images  --val-size 5000   24 epochs of 430 steps = 10,320 (the recipe as chosen)
    50,000 images  --val-size 10000  26 epochs of 391 steps = 10,166

Each run is scored at its last epoch (last.pt), as the final fit keeps its last epoch; a best
epoch chosen on these same images would favour the runs that chose on them. No test figure
is read here.

    python benchmarks/refit.py --seeds 0 1 2 --extra "--threads 2"
    python benchmarks/refit.py --runs-dir runs/refit     # keep the runs; a rerun scores them

The final fit itself is `python benchmarks/best_recipe.py --seeds 0 1 2` (the recipe as it is).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_common import holding, machine
from seeds import run_seed

from mnistlab.checkpoint import load_model
from mnistlab.data.dataset import load_dataset
from mnistlab.data.pipeline import train_val_split
from mnistlab.evaluate import evaluate

RECIPE = "best"
VALIDATION = 5000  # the recipe's validation images: the ones every run is scored on
VARIANTS = {  # name -> the `mnistlab train --recipe best` options that make it
    "50k": ["--val-size", "10000", "--epochs", "26"],
    "55k": ["--val-size", str(VALIDATION), "--epochs", "24"],
}


def score(run: Path, data, seed: int) -> float:
    """Accuracy of the run's last epoch on the seed's VALIDATION images."""
    model, normalizer, _ = load_model(run / "last.pt")
    _, val = train_val_split(data.train_images, data.train_labels, VALIDATION, seed)
    return evaluate(model, val, normalizer).accuracy


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--runs-dir", type=Path, default=None,
                   help="keep the runs here (<dir>/50k/best-seedN, <dir>/55k/best-seedN); a run "
                        "already there with a last.pt is scored, not trained again")
    p.add_argument("--extra", action="append", default=[], metavar="OPTIONS",
                   help="more `mnistlab train` options, one quoted string (repeatable)")
    p.add_argument("--margin", type=float, default=0.0004,
                   help="keep the final fit if 55,000 images beat 50,000 by at least this "
                        "much, mean over the seeds (default 0.0004: two images a seed)")
    p.add_argument("--lock", default=None, help="hold this flock file around each command")
    args = p.parse_args(argv)
    args.extra = [word for text in args.extra for word in shlex.split(text)]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    info = machine()
    torch.set_num_threads(1)  # scoring 5,000 images; the training commands choose their own
    data = load_dataset("mnist", download=False)
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="mnistlab-refit-") as tmp:
        root = args.runs_dir or Path(tmp)
        for seed in args.seeds:
            row: dict[str, float] = {}
            for variant, options in VARIANTS.items():
                runs = root / variant
                run = runs / f"{RECIPE}-seed{seed}"
                if not (run / "last.pt").is_file():
                    runs.mkdir(parents=True, exist_ok=True)
                    run_seed(RECIPE, seed, runs, [*options, *args.extra], None, args.lock)
                with holding(args.lock):
                    row[variant] = score(run, data, seed)
            rows.append(row)
            print(f"seed {seed}: 50,000 images {row['50k']:.2%}, 55,000 images "
                  f"{row['55k']:.2%}", flush=True)
    gain = statistics.mean(r["55k"] - r["50k"] for r in rows)
    variants = " / ".join(" ".join(options) for options in VARIANTS.values())
    print(f"\n`mnistlab train --recipe best` with {variants} {' '.join(args.extra)}".rstrip()
          + f", seeds {', '.join(map(str, args.seeds))}")
    print(f"CPU: {info['cpu']}, {info['cores']} cores, torch {info['torch']}")
    print(f"Accuracy of the last epoch on each seed's {VALIDATION:,} validation images "
          f"(neither run trains on them):\n")
    print("| seed | 50,000 images | 55,000 images | gain |\n|---:|---:|---:|---:|")
    for seed, r in zip(args.seeds, rows, strict=True):
        print(f"| {seed} | {r['50k']:.2%} | {r['55k']:.2%} | "
              f"{100 * (r['55k'] - r['50k']):+.2f} |")
    means = {v: statistics.mean(r[v] for r in rows) for v in VARIANTS}
    print(f"| **mean** | {means['50k']:.2%} | {means['55k']:.2%} | **{100 * gain:+.2f}** |\n")
    verdict = "keep" if gain >= args.margin else "do not keep"
    print(f"{verdict} the final fit on all 60,000: the gain is {100 * gain:+.3f} points, the "
          f"margin {100 * args.margin:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
