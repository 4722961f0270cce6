"""Data-parallel training: two real processes on 127.0.0.1 (torchrun, gloo), synthetic data."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mnistlab.errors import MnistlabError
from mnistlab.train.distributed import DistInfo, broadcast_object, from_environment, per_rank_batch

TESTS = Path(__file__).resolve().parent

# Each rank builds the same synthetic data set, trains, and reports what it saw.
WORKER = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, {tests!r})
    import numpy as np, torch
    from conftest import draw_digits
    from mnistlab.data.dataset import DigitData
    from mnistlab.data.registry import MNIST
    from mnistlab.train import resolve_config, train

    (tx, ty), (vx, vy) = draw_digits(800, 0), draw_digits(200, 1)
    t = lambda a: torch.from_numpy(a)
    data = DigitData(MNIST, t(tx), t(ty.astype(np.int64)), t(vx), t(vy.astype(np.int64)), {{}})
    config = resolve_config(model="lenet5", epochs=2, batch_size=32, lr=0.05, val_size=100,
                            bf16="off", threads=1, runs_dir={runs!r}, log_interval=5)
    result = train(config, data=data)
    rank = int(os.environ["RANK"])
    with open(os.path.join({out!r}, f"rank{{rank}}.json"), "w") as f:
        json.dump({{"rank": rank, "world": int(os.environ["WORLD_SIZE"]),
                   "run_dir": str(result.run_dir), "steps": result.summary["steps"],
                   "test_accuracy": result.summary["test_accuracy"],
                   "world_size": result.summary["world_size"],
                   "weights_sum": float(sum(p.double().sum() for p in result.model.parameters()))
                   }}, f)
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_two(tmp_path: Path, edit=lambda source: source):
    """Run WORKER (after `edit`) as two local torchrun processes; their finished process and
    each rank's report."""
    runs, out = tmp_path / "runs", tmp_path / "out"
    out.mkdir()
    worker = tmp_path / "worker.py"
    worker.write_text(edit(WORKER.format(tests=str(TESTS), runs=str(runs), out=str(out))))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
           "--master_addr=127.0.0.1", f"--master_port={free_port()}", str(worker)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done, [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


def test_two_processes_train_together_and_only_rank0_writes(tmp_path):
    runs = tmp_path / "runs"
    done, reports = launch_two(tmp_path)
    assert [r["rank"] for r in reports] == [0, 1]
    assert all(r["world"] == 2 and r["world_size"] == 2 for r in reports)
    # Same run directory name on both ranks; one directory on disk, written by rank 0.
    assert reports[0]["run_dir"] == reports[1]["run_dir"]
    assert [p.name for p in runs.iterdir()] == [Path(reports[0]["run_dir"]).name]
    run_dir = Path(reports[0]["run_dir"])
    assert {"config.json", "metrics.csv", "best.pt", "last.pt", "summary.json"} <= {
        p.name for p in run_dir.iterdir()}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2
    # --batch-size is global: 700 training images, 16 per rank per step -> 21 steps an epoch.
    assert reports[0]["steps"] == reports[1]["steps"] == 2 * (700 // 2 // 16)
    # DDP keeps the replicas identical, and the model learned the synthetic classes.
    assert reports[0]["weights_sum"] == pytest.approx(reports[1]["weights_sum"], rel=1e-6)
    assert summary["test_accuracy"] > 0.5
    # Only rank 0 prints the progress lines.
    assert done.stdout.count("test accuracy") == 1


def test_batch_size_must_split_across_ranks():
    assert per_rank_batch(128, DistInfo(0, 2, 0)) == 64
    assert per_rank_batch(127, DistInfo()) == 127
    with pytest.raises(MnistlabError, match="--batch-size 127 does not split evenly across 2"):
        per_rank_batch(127, DistInfo(1, 2, 1))


def test_single_process_needs_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = from_environment()
    assert not info.enabled and info.is_main
    assert broadcast_object("name", info) == "name"
