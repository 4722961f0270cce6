"""What the not-a-digit training costs: the default recipe with and without outlier exposure.

    python benchmarks/notadigit_cost.py                 # 3 alternated pairs, 1 thread
    python benchmarks/notadigit_cost.py --pairs 5 --threads 2

Runs alternate (with, without, with, without, ...) in one process so that a change in the
machine's load hits both sides alike; the figure is the ratio of their training times, pair
by pair and overall (median). The target (issue 18) is at most 1.15x.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_common import machine

from mnistlab.data.dataset import load_dataset
from mnistlab.train import resolve_config, train


def seconds(outlier_exposure: str, runs: Path, name: str, threads: int, data) -> float:
    config = resolve_config("default", outlier_exposure=outlier_exposure, threads=threads,
                            runs_dir=str(runs), name=name)
    return train(config, data=data, stream=io.StringIO()).summary["train_seconds"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    data = load_dataset("mnist", download=False)
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        seconds("off", Path(tmp), "warm-up", args.threads, data)  # caches, first-run costs
        for i in range(args.pairs):
            with_oe = seconds("auto", Path(tmp), f"with-{i}", args.threads, data)
            without = seconds("off", Path(tmp), f"without-{i}", args.threads, data)
            ratios.append(with_oe / without)
            print(f"pair {i + 1}: with {with_oe:.1f} s, without {without:.1f} s, "
                  f"{ratios[-1]:.2f}x", flush=True)
    info = machine()
    print(f"median {statistics.median(ratios):.2f}x over {args.pairs} pairs; {info['cpu']}, "
          f"torch {info['torch']}, {args.threads} thread(s), load average "
          f"{os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
