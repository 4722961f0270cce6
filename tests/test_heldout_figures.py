"""The README's real-world figures, pinned: the default run on the small held-out set.

benchmarks/heldout/pinned.json holds the figures (written by `python benchmarks/realworld.py
RUN --small --pin` from a default run); this test trains the default run and fails when any
figure falls more than `margin_points` (3) percentage points below its pinned value. After a
deliberate change to the recipe, the gate or the preprocessing, regenerate pinned.json.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
PINNED = BENCHMARKS / "heldout" / "pinned.json"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("realworld_benchmark", BENCHMARKS /
                                                  "realworld.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def pinned() -> dict:
    return json.loads(PINNED.read_text())


def test_pinned_file_holds_every_pinned_figure():
    from benchmarks.heldout.figures import PINNED as MEASURES

    data = pinned()
    assert set(data["figures"]) == set(MEASURES)
    assert all(0.0 <= v <= 100.0 and math.isfinite(v) for v in data["figures"].values())
    assert data["margin_points"] == 3.0
    assert "--pin" in data["written_by"] and data["set"].startswith("heldout.SMALL")
    assert set(data["pictures"]) == set(MEASURES) and min(data["pictures"].values()) >= 20


def below_pin(figures: dict[str, float], pins: dict[str, float], margin: float) -> list[str]:
    return [f"{name}: {figures[name]:.2f}% < pinned {value:.2f}% - {margin:g}"
            for name, value in pins.items() if figures[name] < value - margin]


def test_the_comparison_catches_a_three_point_drop():
    pins = {"non-digits rejected": 80.0, "printed digits read right": 95.0}
    assert below_pin({"non-digits rejected": 77.0, "printed digits read right": 99.0}, pins,
                     3.0) == []
    assert below_pin({"non-digits rejected": 76.9, "printed digits read right": 99.0}, pins,
                     3.0) == ["non-digits rejected: 76.90% < pinned 80.00% - 3"]


@pytest.mark.slow
@pytest.mark.real_data
def test_default_run_holds_its_pinned_held_out_figures(real_default_run):
    data = pinned()
    figures = load_benchmark().small_figures(real_default_run, "cpu", seed=0)
    print("held-out figures (small set, seed 0):", figures)
    # A run trained on another machine (another thread count) may read one picture
    # differently; where one picture is worth more than the margin (20 numbers: 5 points),
    # one picture is allowed, two are not.
    margins = {m: max(data["margin_points"], 100.0 / n + 0.01)
               for m, n in data["pictures"].items()}
    wrong = [line for m in data["figures"]
             for line in below_pin(figures, {m: data["figures"][m]}, margins[m])]
    assert wrong == []
