"""Run `mnistlab train` (a recipe, unchanged) for several seeds and report accuracy and times.

Each seed is a separate command, timed from outside, so the whole-command time includes
Python start-up, imports, data loading and the final evaluation:

    python benchmarks/seeds.py                      # default recipe, seeds 0-4
    python benchmarks/seeds.py --recipe best --seeds 0 1 2 --chunk-epochs 5

`--chunk-epochs` trains in pieces (`--resume` between them) so that a long run can hold
a shared machine's lock a few minutes at a time; `train_seconds` still adds up exactly.
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

from mnistlab.device import cpu_model

# Times a command from inside the lock, so that waiting for the lock is not counted.
TIMED = ("import subprocess, sys, time; t = time.perf_counter(); "
         "r = subprocess.run(sys.argv[2:], stdout=open(sys.argv[1] + '.out', 'a')); "
         "open(sys.argv[1], 'a').write(f'{time.perf_counter() - t}\\n'); sys.exit(r.returncode)")
CHUNK = """
from mnistlab.train import resolve_config, train
config = resolve_config({recipe!r}, seed={seed}, runs_dir={runs_dir!r}, name={name!r})
train(config, resume={runs_dir!r} + "/" + {name!r} if {resume} else None, max_epochs={stop})
"""


def run_seed(recipe: str, seed: int, runs_dir: Path, extra: list[str],
             chunk_epochs: int | None, lock: str | None) -> dict:
    name = f"{recipe}-seed{seed}"
    timing = runs_dir / f"{name}.seconds"
    prefix = [*(["flock", lock] if lock else []), sys.executable, "-c", TIMED, str(timing)]
    base = [sys.executable, "-m", "mnistlab", "train", "--recipe", recipe, "--seed", str(seed),
            "--runs-dir", str(runs_dir), "--name", name, *extra]
    if chunk_epochs is None:
        subprocess.run(prefix + base, check=True)
    else:
        # Train `chunk_epochs` more per command, resuming last.pt, until the summary appears.
        from mnistlab.train import resolve_config

        done, epochs = 0, resolve_config(recipe).epochs
        while done < epochs:
            done += chunk_epochs
            code = (CHUNK.format(recipe=recipe, seed=seed, runs_dir=str(runs_dir), name=name,
                                 stop=done, resume=done > chunk_epochs))
            subprocess.run([*prefix, sys.executable, "-c", code], check=True)
    wall = sum(float(line) for line in timing.read_text().split())
    summary = json.loads((runs_dir / name / "summary.json").read_text())
    output = Path(f"{timing}.out").read_text().splitlines()
    precision = next((line.removeprefix("precision: ") for line in output
                      if line.startswith("precision: ")), "?")
    threads = summary.get("threads") or {}
    return {"seed": seed, "test_accuracy": summary["test_accuracy"], "precision": precision,
            "threads": f"{threads.get('threads')} -> {threads.get('final')} "
                       f"({threads.get('source')}, {len(threads.get('changes') or [])} changes)",
            "reported_command_seconds": summary.get("command_seconds"),
            "train_seconds": summary["train_seconds"], "command_seconds": wall,
            "epochs": summary["epochs_run"], "images_per_s": summary["images_per_s"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="default")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--chunk-epochs", type=int, default=None)
    p.add_argument("--lock", default=None,
                   help="hold this flock file around each command (a shared machine)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    p.add_argument("extra", nargs="*", help="more `mnistlab train` options, after --")
    args = p.parse_args()
    if args.extra and args.chunk_epochs:
        p.error("extra `mnistlab train` options cannot be combined with --chunk-epochs")
    rows = []
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="mnistlab-seeds-") as tmp:
        for seed in args.seeds:
            row = run_seed(args.recipe, seed, Path(tmp), args.extra, args.chunk_epochs, args.lock)
            rows.append(row)
            print(f"seed {seed}: test {row['test_accuracy']:.2%}  "
                  f"train {row['train_seconds']:.1f} s  command {row['command_seconds']:.1f} s  "
                  f"{row['images_per_s']:,.0f} img/s  precision: {row['precision']}  "
                  f"threads: {row['threads']}",
                  flush=True)
    accs = [r["test_accuracy"] for r in rows]
    print(f"{args.recipe}: mean {statistics.mean(accs):.2%}, min {min(accs):.2%}, "
          f"median train {statistics.median(r['train_seconds'] for r in rows):.1f} s, "
          f"median command {statistics.median(r['command_seconds'] for r in rows):.1f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
