"""`mnistlab train` on a quiet and on a busy machine: the default (threads measured and
adapted) against `--threads 1` and `--threads N`, under the same load, side by side.

Two kinds of load, each started by this script and stopped by it:

- `torch`: a competing PyTorch job with PyTorch's default threads, a `tanh(a @ a)` loop on a
  384x384 tensor (as a second training or a notebook would be);
- `spin`: plain single-threaded busy loops, one per core.

For each load (and quiet, with none), the three commands run one after the other under that
same load, each a separate `mnistlab train` process timed from outside. The figures are the
training seconds from each run's summary.json and the whole command's wall time; the ratio
that matters is the default's against the better of the two fixed counts under the same
load (target: at most 1.3x).

    python benchmarks/busy.py                  # the default recipe, one epoch
    python benchmarks/busy.py --quick          # a fifth of the epoch (--val-size 50000)
    python benchmarks/busy.py --wait-policy    # also the default under OMP_WAIT_POLICY=PASSIVE
    python benchmarks/busy.py --steps 3        # bare training steps/s: loads x wait policy

A fixed count that collapses is stopped at `--timeout` seconds and reported as a lower
bound. On a machine shared with other work the "quiet" rows are not quiet: the load average
is printed with every row.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_common import machine

LOADS = {
    "torch": ("import torch\na = torch.randn(384, 384)\nwhile True:\n"
              "    b = torch.tanh(a @ a)\n", 1),
    "spin": ("while True:\n    pass\n", None),  # None: one per core
}


# One process per measurement, since OMP_WAIT_POLICY is read when the OpenMP runtime starts:
# training steps of the default model (bf16 + channels-last, batch 128 + 24 as with outlier
# exposure) for a few seconds at a given thread count; prints steps per second.
STEPS = """
import sys, time
import torch, torch.nn.functional as F
threads, seconds = int(sys.argv[1]), float(sys.argv[2])
torch.set_num_threads(threads)
from mnistlab.models import create_model
model = create_model("fast-strided").to(memory_format=torch.channels_last)
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
x = torch.randn(152, 1, 28, 28).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 10, (152,))
def step():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    loss = F.cross_entropy(out.float(), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
for _ in range(3):
    step()
start, n = time.perf_counter(), 0
while time.perf_counter() - start < seconds:
    step()
    n += 1
print(n / (time.perf_counter() - start))
"""
POLICIES = ("default", "PASSIVE", "ACTIVE")


def step_rates(loads: list[str], cores: int, seconds: float) -> None:
    """Steps/s of the bare training step, for each load x OMP_WAIT_POLICY x thread count."""
    counts = sorted({1, cores})
    print(f"\nTraining steps per second, {seconds:.0f} s each (OMP_WAIT_POLICY as given):\n")
    print("| load | OMP_WAIT_POLICY | " + " | ".join(f"{n} thread{'s' * (n > 1)}"
                                                  for n in counts) + " | load average |")
    print("|---|---|" + "---:|" * (len(counts) + 1))
    for load in loads:
        processes = start_load(load, cores) if load != "quiet" else []
        try:
            time.sleep(2.0 if processes else 0.0)
            for policy in POLICIES:
                env = dict(os.environ)
                env.pop("OMP_WAIT_POLICY", None)
                if policy != "default":
                    env["OMP_WAIT_POLICY"] = policy
                rates = []
                for n in counts:
                    out = subprocess.run([sys.executable, "-c", STEPS, str(n), str(seconds)],
                                         env=env, capture_output=True, text=True, check=True)
                    rates.append(float(out.stdout.strip()))
                print(f"| {load} | {policy} | " + " | ".join(f"{r:.1f}" for r in rates)
                      + f" | {os.getloadavg()[0]:.1f} |", flush=True)
        finally:
            stop_load(processes)


@dataclass
class Config:
    label: str
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


def start_load(kind: str, cores: int) -> list[subprocess.Popen]:
    code, count = LOADS[kind]
    return [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL) for _ in range(count or cores)]


def stop_load(processes: list[subprocess.Popen]) -> None:
    for p in processes:
        p.terminate()
    for p in processes:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def run_train(config: Config, runs: Path, name: str, extra: list[str],
              timeout: float) -> dict:
    cmd = [sys.executable, "-m", "mnistlab", "train", "--runs-dir", str(runs), "--name", name,
           *extra, *config.args]
    env = {**os.environ, **config.env}
    load = os.getloadavg()[0]
    start = time.perf_counter()
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"config": config.label, "timed_out": True, "command_s": timeout,
                "load_average": load}
    command_s = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    summary = json.loads((runs / name / "summary.json").read_text())
    threads = summary.get("threads") or {}
    return {"config": config.label, "timed_out": False, "command_s": command_s,
            "train_s": summary["train_seconds"], "test_accuracy": summary["test_accuracy"],
            "reported_command_s": summary.get("command_seconds"),
            "startup": summary.get("startup_seconds"), "load_average": load,
            "threads_start": threads.get("threads"), "threads_final": threads.get("final"),
            "changes": len(threads.get("changes") or []),
            "first_line": next((line for line in out.stdout.splitlines()
                                if line.startswith("threads: ")), "")}


def fmt(row: dict, key: str = "train_s") -> str:
    if row.get("skipped"):
        return "-"
    if row["timed_out"]:
        return f"> {row['command_s']:.0f} s"
    return f"{row[key]:.1f} s"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="train on 10,000 images (--val-size 50000) instead of 55,000")
    p.add_argument("--loads", nargs="+", default=["quiet", "torch", "spin"],
                   choices=["quiet", "torch", "spin"])
    p.add_argument("--timeout", type=float, default=400.0,
                   help="seconds after which a run is stopped and reported as a lower bound")
    p.add_argument("--only", nargs="+", choices=["default", "1", "N"], default=None,
                   help="run only these of the three (the ratios need default and one fixed)")
    p.add_argument("--wait-policy", action="store_true",
                   help="also run the default with OMP_WAIT_POLICY=PASSIVE and ACTIVE")
    p.add_argument("--steps", type=float, default=None, metavar="SECONDS",
                   help="instead: time bare training steps for SECONDS at 1 and N threads "
                        "under each load and OpenMP wait policy")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    p.add_argument("extra", nargs="*", help="more `mnistlab train` options, after --")
    args = p.parse_args()
    info = machine()
    cores = info["cores"] or 1
    n = int(os.environ.get("OMP_NUM_THREADS", cores))
    configs = [Config("default (measured, adaptive)"), Config("--threads 1", ["--threads", "1"]),
               Config(f"--threads {n}", ["--threads", str(n)])]
    if args.only:
        keep = {"default": 0, "1": 1, "N": 2}
        configs = [c if keep_i in {keep[o] for o in args.only} else None
                   for keep_i, c in enumerate(configs)]
    if args.wait_policy:
        configs += [Config(f"default, OMP_WAIT_POLICY={v}", env={"OMP_WAIT_POLICY": v})
                    for v in ("PASSIVE", "ACTIVE")]
    if args.steps is not None:
        print(f"CPU: {info['cpu']}, {cores} cores, torch {info['torch']}; load average at "
              f"the start {info['load_average_at_start']}", flush=True)
        step_rates(args.loads, cores, args.steps)
        return 0
    extra = [*(["--val-size", "50000"] if args.quick else []), *args.extra]
    print(f"CPU: {info['cpu']}, {cores} cores, torch {info['torch']}; load average at the "
          f"start {info['load_average_at_start']}; train options: {' '.join(extra) or '-'}",
          flush=True)
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="mnistlab-busy-") as tmp:
        runs = Path(tmp)
        for load in args.loads:
            processes = start_load(load, cores) if load != "quiet" else []
            try:
                time.sleep(2.0 if processes else 0.0)  # let the load get going
                rows = []
                for i, config in enumerate(configs):
                    if config is None:  # left out with --only
                        rows.append({"config": "-", "timed_out": True, "command_s": 0.0,
                                     "skipped": True})
                        continue
                    row = run_train(config, runs, f"{load}-{i}", extra, args.timeout)
                    rows.append(row)
                    print(f"  {load:5s} {config.label:36s} training {fmt(row):>9s}, command "
                          f"{fmt(row, 'command_s'):>9s}, threads "
                          f"{row.get('threads_start')}->{row.get('threads_final')} "
                          f"({row.get('changes', 0)} changes), load average "
                          f"{row['load_average']:.1f}", flush=True)
                results[load] = rows
            finally:
                stop_load(processes)
    print("\nTraining seconds (whole command in brackets):\n")
    print("| load | " + " | ".join(c.label if c else "-" for c in configs)
          + " | default / better fixed: training (command) |")
    print("|---|" + "---:|" * (len(configs) + 1))
    for load, rows in results.items():
        default, one, many = rows[0], rows[1], rows[2]
        fixed = [r for r in (one, many) if not r["timed_out"]]  # (skipped rows time out)
        if default["timed_out"] or not fixed:
            ratio = "?"
        else:
            ratio = (f"{default['train_s'] / min(r['train_s'] for r in fixed):.2f}x "
                     f"({default['command_s'] / min(r['command_s'] for r in fixed):.2f}x)")
        print(f"| {load} | " + " | ".join(f"{fmt(r)} ({fmt(r, 'command_s')})" for r in rows)
              + f" | {ratio} |")
    if "quiet" in results:
        quiet = results["quiet"]
        for load, rows in results.items():
            if load == "quiet":
                continue
            ratios = ", ".join(
                f"{r['config']} {r['train_s'] / q['train_s']:.1f}x" if not r["timed_out"]
                else f"{r['config']} > {r['command_s'] / q['train_s']:.0f}x"
                for r, q in zip(rows, quiet, strict=True)
                if not q["timed_out"] and not r.get("skipped"))
            print(f"loaded / quiet ({load}): {ratios}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "extra": extra, "results": results},
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
