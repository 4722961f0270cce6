"""`mnistlab train --recipe best`, with or without `--ema` or `--members`, for several seeds:
validation and test accuracy of the averaged (or ensembled) and the trained weights (or the
members alone) side by side, and the times.

    python benchmarks/best_recipe.py --ema 0.999                  # seeds 0 1 2
    python benchmarks/best_recipe.py --seeds 0 1 2 --ema 0        # the recipe without EMA
    python benchmarks/best_recipe.py --ema 0.9995 --epochs 30 --extra "--threads 2"
    python benchmarks/best_recipe.py --ema 0.999 --runs-dir runs/bench --lock /tmp/cpu.lock
    python benchmarks/best_recipe.py --members 2 --extra "--threads 2"   # an ensemble of two

Each seed is a separate `mnistlab train` command, run and timed from outside by
benchmarks/seeds.py (`run_seed`), so the whole-command time includes Python start-up,
imports, data loading and the final evaluation; the figures come from each run's
summary.json.

Which column does what: a lever (a decay, a number of epochs) is CHOSEN on the validation
columns (5,000 training images held out by each run), and only then REPORTED on the test
columns. Never choose on test.

"EMA" columns are the moving average, which the run validates, chooses its best epoch with,
tests and saves. "raw" columns are the trained weights: with --ema, those at the last epoch
(summary.json `raw_weights`); without it, the run's own best epoch (there is no average).
With --members K, the "ensemble" columns are the ensemble's (what the run saves) and the
"members" columns the mean of its members alone, each at its own best epoch; "train s" is
the sum of the members' training times.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_common import machine
from seeds import run_seed

from mnistlab.errors import MnistlabError
from mnistlab.train import resolve_config

RECIPE = "best"
COLUMNS = ("seed", "val EMA", "val raw", "val ensemble", "val members", "test EMA", "test raw",
           "test ensemble", "test members", "best epoch", "train s", "command s")


def train_options(ema: float | None, epochs: int | None, extra: list[str],
                  members: int | None = None) -> list[str]:
    """The `mnistlab train` options after `--recipe best --seed N --runs-dir .. --name ..`."""
    options = []
    if members is not None:
        options += ["--members", str(members)]
    if ema is not None:
        options += ["--ema", repr(ema)]
    if epochs is not None:
        options += ["--epochs", str(epochs)]
    return options + extra


def figures(summary: dict[str, Any]) -> dict[str, Any]:
    """One table row's accuracies from a run's summary.json (None where there is none)."""
    raw = summary.get("raw_weights")
    members = summary.get("members")
    if members:  # --members: the ensemble chose nothing itself; its members alone beside it
        alone = {f"{split} members": statistics.mean(m[f"{split}_accuracy"] for m in members)
                 for split in ("val", "test")}
        return {"val EMA": None, "val raw": None, "val ensemble": summary["best_val_accuracy"],
                "test EMA": None, "test raw": None, "test ensemble": summary["test_accuracy"],
                **alone}
    if raw is not None:  # --ema: the average chose and was tested; the trained weights beside
        return {"val EMA": summary["best_val_accuracy"], "val raw": raw.get("val_acc"),
                "test EMA": summary["test_accuracy"], "test raw": raw.get("test_acc")}
    return {"val EMA": None, "val raw": summary["best_val_accuracy"],
            "test EMA": None, "test raw": summary["test_accuracy"]}


def cell(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if column.startswith(("val", "test")):
        return f"{value:.2%}"
    if column.endswith(" s"):
        return f"{value:.1f}"
    return str(value)


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table of the seeds' rows and their means."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(cell(c, row.get(c)) for c in COLUMNS) + " |")
    means: dict[str, Any] = {"seed": "**mean**"}
    for c in COLUMNS[1:]:
        values = [row[c] for row in rows if row.get(c) is not None]
        if values and c != "best epoch":
            means[c] = statistics.mean(values)
    lines.append("| " + " | ".join(cell(c, means.get(c)) for c in COLUMNS) + " |")
    return "\n".join(lines)


def describe(args: argparse.Namespace, options: list[str], info: dict[str, Any],
             validated: bool = True) -> str:
    what = " ".join(["mnistlab train --recipe", RECIPE, *map(shlex.quote, options)])
    choose = ("CHOOSE on the val columns (5,000 held-out training images); REPORT the test "
              "columns (never choose on them)." if validated else
              "No validation split (the recipe's final fit on all the training images keeps "
              "its last epoch): nothing here chooses; REPORT the test columns. Levers are "
              "chosen on the development form: --extra '--val-size 5000 --epochs 24'.")
    return (f"`{what}`, seeds {', '.join(map(str, args.seeds))}\n"
            f"CPU: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, load average "
            f"{info['load_average_at_start']:.2f} at the start, "
            f"{os.getloadavg()[0]:.2f} at the end\n{choose}\n"
            "EMA: the moving average (validated, chosen, tested, saved); raw: the trained "
            "weights (with --ema at the last epoch, else the run's best epoch).")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--ema", type=float, default=None, metavar="DECAY",
                   help="passed to mnistlab train --ema (0: off; default: as the recipe says)")
    p.add_argument("--epochs", type=int, default=None,
                   help="passed to mnistlab train (default: the recipe's)")
    p.add_argument("--members", type=int, default=None, metavar="K",
                   help="passed to mnistlab train --members (default: the recipe's)")
    p.add_argument("--runs-dir", type=Path, default=None,
                   help="keep the runs here, in a folder named after the options (default: "
                        "a temporary folder, removed at the end)")
    p.add_argument("--extra", action="append", default=[], metavar="OPTIONS",
                   help="more `mnistlab train` options, one quoted string, e.g. "
                        "--extra '--threads 2' (repeatable)")
    p.add_argument("--lock", default=None,
                   help="hold this flock file around each command (a shared machine)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = p.parse_args(argv)
    args.extra = [word for text in args.extra for word in shlex.split(text)]
    try:  # the options' own one-line errors, before minutes of training
        resolve_config(RECIPE, ema=args.ema, epochs=args.epochs, members=args.members)
    except MnistlabError as e:
        p.error(str(e))
    return args


def folder_name(ema: float | None, epochs: int | None, members: int | None = None) -> str:
    """e.g. best-ema0.999-epochs30; plain `best` when the recipe decides everything."""
    parts = [RECIPE] + ([f"members{members}"] if members is not None else [])
    if ema is not None:
        parts.append(f"ema{ema:g}" if ema else "no-ema")
    if epochs is not None:
        parts.append(f"epochs{epochs}")
    return "-".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    options = train_options(args.ema, args.epochs, args.extra, args.members)
    info = machine()
    print(f"CPU: {info['cpu']}, {info['cores']} cores, load average "
          f"{info['load_average_at_start']:.2f}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mnistlab-best-") as tmp:
        runs = (args.runs_dir or Path(tmp)) / folder_name(args.ema, args.epochs, args.members)
        runs.mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:
            name = f"{RECIPE}-seed{seed}"
            if (runs / name).exists():
                print(f"best_recipe.py: {runs / name} exists; choose another --runs-dir",
                      file=sys.stderr)
                return 2
            try:
                timed = run_seed(RECIPE, seed, runs, options, None, args.lock)
            except subprocess.CalledProcessError as e:
                print(f"best_recipe.py: seed {seed}: mnistlab train exited with "
                      f"{e.returncode}; its output: {runs / name}.seconds.out", file=sys.stderr)
                return 1
            summary = json.loads((runs / name / "summary.json").read_text())
            row = {"seed": seed, **figures(summary), "best epoch": summary["best_epoch"],
                   "train s": timed["train_seconds"], "command s": timed["command_seconds"]}
            rows.append(row)
            print(f"seed {seed}: " + ", ".join(f"{k} {cell(k, v)}" for k, v in row.items()
                                               if k != "seed" and v is not None), flush=True)
        print()
        validated = any(row.get(c) is not None for row in rows
                        for c in COLUMNS if c.startswith("val"))
        print(describe(args, options, info, validated))
        print()
        print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "options": options, "rows": rows},
                                        indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
