"""benchmarks/realworld.py end to end, tiny: it runs, prints the markdown tables, writes JSON."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "realworld.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("realworld_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.real_data
def test_realworld_benchmark_runs_small(real_mnist, synthetic_run, tmp_path, capsys):
    benchmark = load_benchmark()
    out = tmp_path / "realworld.json"
    assert benchmark.main([str(synthetic_run), "--per-condition", "1", "--numbers", "2",
                           "--non-digits", "1", "--mnist-on-paper", "4", "--device", "cpu",
                           "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| condition | printed before | printed after |" in text
    for condition in ("gradient", "ruled", "small"):
        assert f"| {condition} |" in text
    assert "whole numbers (2-6 digits) read exactly, printed | 2 |" in text
    assert "non-digits rejected: taps | 1 |" in text
    assert "Liberation" in text or "built-in font" in text
    report = json.loads(out.read_text())
    (result,) = report["results"]
    assert result["run"] == str(synthetic_run)
    assert set(result["local"]["printed"]) == set(benchmark.photolike.CONDITIONS)
    right, total = result["local"]["number-printed"]
    assert total == 2 and 0 <= right <= 2
    assert result["mnist-test-accepted"][1] == len(real_mnist.test_labels)
