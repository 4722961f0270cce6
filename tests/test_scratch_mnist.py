"""The NumPy network's default recipe on real MNIST, through `mnistlab train --backend numpy`
(the `real_mnist` fixture: skipped without $MNISTLAB_DATA, required in CI).

It runs in a subprocess: in a process where PyTorch has already run, torch's OpenMP worker
threads keep spinning and fight OpenBLAS's for the same cores, which can make NumPy's matrix
products many times slower. A fresh process measures what a user gets.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow  # ~5 s of training on an idle 2-core machine
@pytest.mark.real_data
def test_numpy_backend_reaches_98_percent_on_real_mnist(real_mnist, tmp_path) -> None:
    subprocess.run([sys.executable, "-m", "mnistlab", "train", "--backend", "numpy",
                    "--runs-dir", str(tmp_path), "--name", "numpy"], check=True,
                   capture_output=True, text=True, timeout=900)
    summary = json.loads((tmp_path / "numpy" / "summary.json").read_text())
    config = json.loads((tmp_path / "numpy" / "config.json").read_text())
    assert config["model_args"] == {"hidden": "200,50"} and config["resolved"]["backend"] == "numpy"
    assert summary["model_kwargs"] == {"hidden": "200,50", "activation": "relu"}
    assert (config["resolved"]["train_size"], config["resolved"]["val_size"]) == (55000, 5000)
    print(f"\nNumPy MLP 784-200-50-10: val {summary['best_val_accuracy']:.4f}, "
          f"test {summary['test_accuracy']:.4f}, {summary['train_seconds']:.1f} s")
    assert summary["best_val_accuracy"] >= 0.975
    assert summary["test_accuracy"] >= 0.98
