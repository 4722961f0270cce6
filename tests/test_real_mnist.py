"""The issue's contract on the real MNIST: the default recipe reaches >= 99.0% test accuracy,
and `mnistlab eval` of its checkpoint reports exactly the same count. And a guard: every test
in the session that uses the real data carries the marks that `-m "not slow"` relies on."""

from __future__ import annotations

import json

import pytest
import torch

from mnistlab.checkpoint import load_checkpoint
from mnistlab.cli import main
from mnistlab.data.registry import MNIST

REAL_FIXTURES = {"real_mnist", "real_default_run"}
TRAINING_FIXTURES = {"real_default_run", "mnist_run"}  # fixtures that train on real MNIST


def test_every_real_data_test_is_marked(request):
    """Checks the tests selected in this session (all of them in CI; with `-m "not slow"`
    exactly those that would run), so a new unmarked one fails here, not in someone's
    quick run that trains for minutes."""
    unmarked = []
    for item in request.session.items:
        used = set(getattr(item, "fixturenames", ()))
        if used & REAL_FIXTURES and item.get_closest_marker("real_data") is None:
            unmarked.append(f"{item.nodeid} (no real_data mark)")
        if used & TRAINING_FIXTURES and item.get_closest_marker("slow") is None:
            unmarked.append(f"{item.nodeid} (trains on real MNIST, no slow mark)")
    assert not unmarked, "\n".join(unmarked)


@pytest.mark.slow
@pytest.mark.real_data
def test_default_recipe_reaches_99_percent(real_default_run):
    summary = json.loads((real_default_run / "summary.json").read_text())
    print(f"default recipe: test accuracy {summary['test_accuracy']:.2%}, "
          f"{summary['train_seconds']:.1f} s training")
    assert summary["dataset"] == "mnist" and summary["test"]["total"] == 10_000
    assert summary["test_accuracy"] >= 0.990
    config = json.loads((real_default_run / "config.json").read_text())
    # the run records the genuine MNIST files it was trained on
    assert set(MNIST.files[k].name for k in MNIST.files) <= set(config["data_md5"])


@pytest.mark.slow
@pytest.mark.real_data
def test_eval_of_the_checkpoint_gives_the_same_number(real_default_run, capsys):
    summary = json.loads((real_default_run / "summary.json").read_text())
    assert main(["eval", str(real_default_run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["total"] == 10_000
    assert result["correct"] == summary["test"]["correct"]
    assert result["confusion_matrix"] == summary["test"]["confusion_matrix"]


@pytest.mark.slow
@pytest.mark.real_data
def test_best_checkpoint_loads_safely(real_default_run):
    state = load_checkpoint(real_default_run / "best.pt")
    raw = torch.load(real_default_run / "best.pt", weights_only=True)
    assert raw["format"] == "mnistlab-checkpoint" and state["dataset"] == "mnist"
