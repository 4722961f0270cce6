"""`mnistlab doctor train.py` over every script in examples/pitfalls/scripts: which bug each
pitfall script is named as, false alarms on the fixed twins and healthy scripts, seconds per
script; and the watch's overhead on a normal training step, with and without it, side by side.

    python benchmarks/doctor.py                      # all scripts, the default budget
    python benchmarks/doctor.py --steps 100 --json results.json
    python benchmarks/doctor.py --overhead-only

Each script runs as `python -m mnistlab doctor --json SCRIPT` in a fresh process (its time is
the whole command's: Python and torch start-up, the script up to its budget, the probes).
A bug is "named" when the script's expected finding (examples/pitfalls/scripts/expected.json)
is reported as an error or a warning; a false alarm is any error or warning on a fixed or
healthy script.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "examples" / "pitfalls" / "scripts"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_common import machine  # noqa: E402


def run_in_process(script: Path, steps: int | None) -> dict:
    """The doctor's own work on one script, in this process (no Python or torch start-up)."""
    import io

    from mnistlab.doctor.script import examine_script

    start = time.perf_counter()
    report = examine_script(script, steps=steps or 300, output=io.StringIO())
    seconds = time.perf_counter() - start
    s = report.measurements["script"]
    return {"script": script.name, "seconds": seconds, "exit": report.exit_code,
            "findings": [(f.name, f.severity) for f in report.findings],
            "ended": s["ended"], "steps": s["optimizer_steps"]}


def run_script(script: Path, steps: int | None, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "mnistlab", "doctor", "--json", "--quiet"]
    if steps:
        cmd += ["--steps", str(steps)]
    start = time.perf_counter()
    proc = subprocess.run([*cmd, str(script)], capture_output=True, text=True, env=env,
                          timeout=600)
    seconds = time.perf_counter() - start
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return {"script": script.name, "seconds": seconds, "exit": proc.returncode,
                "findings": [], "failed": proc.stderr.strip().splitlines()[-1:]}
    return {"script": script.name, "seconds": seconds, "exit": proc.returncode,
            "findings": [(f["name"], f["severity"]) for f in report["findings"]],
            "ended": report["measurements"]["script"]["ended"],
            "steps": report["measurements"]["script"]["optimizer_steps"]}


def confusion(results: list[dict], expected: dict[str, str]) -> list[str]:
    """Rows: the bug class of each script (clean = fixed twin or healthy); columns: every
    finding reported as an error (E) or a warning (W) on any script."""
    names = sorted({n for r in results for n, s in r["findings"] if s != "note"})
    rows = sorted(results, key=lambda r: (r["script"] not in expected,
                                          expected.get(r["script"], ""), r["script"]))
    head = ["script", "bug class", "s", *[f"({i + 1})" for i in range(len(names))]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        got = {n: s for n, s in r["findings"]}
        cells = []
        for n in names:
            mark = {"error": "E", "warning": "W"}.get(got.get(n, ""), "")
            if mark and expected.get(r["script"]) == n:
                mark = f"**{mark}**"
            cells.append(mark)
        lines.append("| " + " | ".join([r["script"], expected.get(r["script"], "clean"),
                                        f"{r['seconds']:.0f}", *cells]) + " |")
    lines.append("")
    lines.append("Columns: " + "; ".join(f"({i + 1}) `{n}`" for i, n in enumerate(names))
                 + ". Bold: the finding that names the script's bug.")
    return lines


# ---- overhead ------------------------------------------------------------------------------
def _mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))


def _cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10))


def _steps(model: nn.Module, opt, batches, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        x, y = batches[i % len(batches)]
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) / n


def overhead(build, n: int, rounds: int = 5) -> dict:
    """Seconds per training step without and with the watch installed, alternating rounds
    on the same model; the median of the per-round ratios."""
    from mnistlab.doctor.watch import Watch

    torch.manual_seed(0)
    model = build()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batches = [(torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))) for _ in range(8)]
    _steps(model, opt, batches, 20)  # warm-up (the first step's one-off imports)
    plain, watched = [], []
    for _ in range(rounds):
        plain.append(_steps(model, opt, batches, n))
        watch = Watch(max_steps=10**9, max_seconds=1e9)
        watch.install()
        try:
            watched.append(_steps(model, opt, batches, n))
        finally:
            watch.restore()
    ratios = [w / p for p, w in zip(plain, watched, strict=True)]
    return {"plain_ms": 1e3 * statistics.median(plain),
            "watched_ms": 1e3 * statistics.median(watched),
            "ratio": statistics.median(ratios)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None,
                        help="the doctor's --steps (default: its own default budget)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scripts", nargs="*", help="only these script names")
    parser.add_argument("--overhead-only", action="store_true")
    parser.add_argument("--in-process", action="store_true",
                        help="run each script in this process: seconds then exclude Python "
                             "and torch start-up (a few seconds a script)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--table-from", metavar="PATH",
                        help="print the confusion table of an earlier run's --json, run nothing")
    args = parser.parse_args()
    if args.table_from:
        earlier = json.loads(Path(args.table_from).read_text())
        results = [{**r, "findings": [tuple(f) for f in r["findings"]]}
                   for r in earlier["results"]]
        print("\n".join(confusion(results, json.loads((SCRIPTS / "expected.json").read_text()))))
        return 0
    torch.set_num_threads(args.threads)
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, "
          f"{args.threads} threads; load average {info['load_average_at_start']}")
    out: dict = {"machine": info, "threads": args.threads, "steps": args.steps}
    lines: list[str] = []
    if not args.overhead_only:
        expected = json.loads((SCRIPTS / "expected.json").read_text())
        scripts = sorted(SCRIPTS.glob("*.py"))
        if args.scripts:
            scripts = [s for s in scripts if s.name in args.scripts]
        results = []
        for script in scripts:
            r = (run_in_process(script, args.steps) if args.in_process
                 else run_script(script, args.steps, args.threads))
            results.append(r)
            print(f"  {r['script']:40s} {r['seconds']:5.1f} s  exit {r['exit']}  "
                  f"{[n for n, s in r['findings'] if s != 'note']}", flush=True)
        bugs = [r for r in results if r["script"] in expected]
        clean = [r for r in results if r["script"] not in expected]
        named = [r for r in bugs if (expected[r["script"]], "error") in r["findings"]
                 or (expected[r["script"]], "warning") in r["findings"]]
        alarms = [r for r in clean if any(s != "note" for _, s in r["findings"])]
        secs = [r["seconds"] for r in results]
        out.update(results=results, detected=len(named), bugs=len(bugs),
                   false_alarms=len(alarms), clean=len(clean))
        lines += confusion(results, expected)
        lines += ["", f"Detection: {len(named)} of {len(bugs)} bug scripts named "
                  f"({len(named) / max(len(bugs), 1):.0%}); false alarms: {len(alarms)} of "
                  f"{len(clean)} fixed or healthy scripts "
                  f"({len(alarms) / max(len(clean), 1):.0%}); seconds per script "
                  f"({'in process' if args.in_process else 'whole command'}): median "
                  f"{statistics.median(secs):.1f}, max {max(secs):.1f}."]
    rows = []
    for label, build, n in (("MLP 784-128-10", _mlp, 200), ("CNN 16-32 conv + fc", _cnn, 40)):
        o = overhead(build, n)
        out.setdefault("overhead", {})[label] = o
        rows.append(f"| {label}, batch 64 | {o['plain_ms']:.2f} | {o['watched_ms']:.2f} | "
                    f"{o['ratio']:.2f}x |")
    lines += ["", "| training step | plain (ms) | watched (ms) | ratio |", "|---|---|---|---|",
              *rows]
    lines += ["", f"Measured on {info['cpu']} ({info['cores']} cores), torch {info['torch']}, "
              f"{args.threads} threads, load average {os.getloadavg()[0]:.2f} at the end."]
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
