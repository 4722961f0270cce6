"""glibc's allocator settings and training speed, side by side (mnistlab.allocator).

Each pair trains the same run twice, one command after the other, in alternating order:
once as mnistlab does by default (freed blocks below 256 MiB kept for reuse) and once with
`MNISTLAB_MALLOC=default` (glibc's own thresholds), and compares the training images per
second from each run's summary.json. Ratios are per pair, so a machine whose speed drifts
between pairs still compares like with like.

    python benchmarks/allocator.py                     # default, best and best-dev
    python benchmarks/allocator.py --cases best --pairs 3 --best-epochs 4 --threads 1

Cases: `default` (the default recipe, one epoch), `best` (`--recipe best`, its final fit on
all 60,000 images, nothing evaluated between epochs) and `best-dev` (its development form,
`--val-size 5000`, validated after every epoch), the last two for `--best-epochs` epochs.
A one-epoch `best` shows little: with glibc's own thresholds the slowdown set in from the
second epoch on in the runs that found it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_common import holding, machine

SETTINGS = {"kept": {}, "glibc default": {"MNISTLAB_MALLOC": "default"}}


CASES = {"default": ("default", []), "best": ("best", []),
         "best-dev": ("best", ["--val-size", "5000"])}


def train_speed(recipe: str, setting: str, runs: Path, name: str, options: list[str],
                lock: str | None) -> float:
    """Training images per second of one `mnistlab train` command."""
    env = {k: v for k, v in os.environ.items() if k != "MNISTLAB_MALLOC"}
    env.update(SETTINGS[setting])
    command = [sys.executable, "-m", "mnistlab", "train", "--recipe", recipe, "--seed", "0",
               "--runs-dir", str(runs), "--name", name, *options]
    with holding(lock):
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads((runs / name / "summary.json").read_text())["images_per_s"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--best-epochs", type=int, default=3,
                   help="epochs of the best recipe per command (default 3)")
    p.add_argument("--lock", default=None, help="hold this flock file around each command")
    args = p.parse_args(argv)
    info = machine()
    print(f"CPU: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, load average "
          f"{info['load_average_at_start']:.2f}; --threads {args.threads}", flush=True)
    lines = ["| case | pair | kept (images/s) | glibc default (images/s) | ratio |",
             "|---|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory(prefix="mnistlab-allocator-") as tmp:
        for case in args.cases:
            recipe, options = CASES[case]
            options = [*options, "--threads", str(args.threads)]
            if recipe == "best":
                options += ["--epochs", str(args.best_epochs)]
            ratios = []
            for pair in range(args.pairs):
                order = list(SETTINGS) if pair % 2 == 0 else list(SETTINGS)[::-1]
                speed = {s: train_speed(recipe, s, Path(tmp), f"{case}-{pair}-{i}", options,
                                        args.lock) for i, s in enumerate(order)}
                ratio = speed["kept"] / speed["glibc default"]
                ratios.append(ratio)
                lines.append(f"| {case} | {pair} | {speed['kept']:,.0f} | "
                             f"{speed['glibc default']:,.0f} | {ratio:.2f}x |")
                print(lines[-1], flush=True)
            lines.append(f"| **{case}** | median | | | **{statistics.median(ratios):.2f}x** |")
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
