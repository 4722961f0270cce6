"""The issue's contract on the real MNIST: the default recipe reaches >= 99.0% test accuracy,
and `mnistlab eval` of its checkpoint reports exactly the same count."""

from __future__ import annotations

import json

import pytest
import torch

from mnistlab.checkpoint import load_checkpoint
from mnistlab.cli import main
from mnistlab.data.registry import MNIST

pytestmark = [pytest.mark.slow, pytest.mark.real_data]


def test_default_recipe_reaches_99_percent(real_default_run):
    summary = json.loads((real_default_run / "summary.json").read_text())
    print(f"default recipe: test accuracy {summary['test_accuracy']:.2%}, "
          f"{summary['train_seconds']:.1f} s training")
    assert summary["dataset"] == "mnist" and summary["test"]["total"] == 10_000
    assert summary["test_accuracy"] >= 0.990
    config = json.loads((real_default_run / "config.json").read_text())
    # the run records the genuine MNIST files it was trained on
    assert set(MNIST.files[k].name for k in MNIST.files) <= set(config["data_md5"])


def test_eval_of_the_checkpoint_gives_the_same_number(real_default_run, capsys):
    summary = json.loads((real_default_run / "summary.json").read_text())
    assert main(["eval", str(real_default_run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["total"] == 10_000
    assert result["correct"] == summary["test"]["correct"]
    assert result["confusion_matrix"] == summary["test"]["confusion_matrix"]


def test_best_checkpoint_loads_safely(real_default_run):
    state = load_checkpoint(real_default_run / "best.pt")
    raw = torch.load(real_default_run / "best.pt", weights_only=True)
    assert raw["format"] == "mnistlab-checkpoint" and state["dataset"] == "mnist"
