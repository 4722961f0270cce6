"""The doctor and `mnistlab train` agree: `doctor --model X` examines the TrainConfig that
`train --model X` resolves; a rate the user did not give is never called theirs; a plain
state_dict file is told how to be examined."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from conftest import synthetic_spec, write_dataset
from mnistlab.cli import build_parser, main
from mnistlab.cli.doctor import ASSUMED_LR, doctor_config
from mnistlab.cli.train import config_from_args
from mnistlab.data.registry import DATASETS
from mnistlab.models import MODELS

torch.set_num_threads(1)


@pytest.mark.parametrize("name", list(MODELS))
def test_doctor_and_train_resolve_the_same_config_for_every_zoo_model(name):
    parser = build_parser()
    trained = config_from_args(parser.parse_args(["train", "--model", name]))
    examined = doctor_config(parser.parse_args(["doctor", "--model", name]))
    assert dataclasses.asdict(examined) == dataclasses.asdict(trained)


@pytest.mark.parametrize("extra", [["--epochs", "3"], ["--lr", "0.05", "--batch-size", "64"],
                                   ["--optimizer", "adam", "--lr", "0.001"]])
def test_they_agree_with_options_too(extra):
    parser = build_parser()
    trained = config_from_args(parser.parse_args(["train", "--model", "lenet5", *extra]))
    examined = doctor_config(parser.parse_args(["doctor", "--model", "lenet5", *extra]))
    assert dataclasses.asdict(examined) == dataclasses.asdict(trained)


def test_lenet5_is_examined_with_trains_rate_and_epochs():
    parser = build_parser()
    config = doctor_config(parser.parse_args(["doctor", "--model", "lenet5"]))
    train = config_from_args(parser.parse_args(["train", "--model", "lenet5"]))
    assert (config.lr, config.epochs) == (train.lr, train.epochs)


def test_own_file_counts_steps_on_the_training_split():
    config = doctor_config(build_parser().parse_args(["doctor", "net.py:Net"]))
    assert config.val_size == 5000  # 55,000 MNIST training images an epoch, as train holds out
    assert (config.schedule, config.weight_decay, config.lr) == ("none", 0.0, ASSUMED_LR)


@pytest.fixture
def synth(tmp_path, monkeypatch):
    folder = write_dataset(tmp_path / "synth", n_train=400, n_test=100)
    monkeypatch.setitem(DATASETS, "synth", synthetic_spec(folder))
    return ["--dataset", "synth", "--data-dir", str(folder), "--no-download"]


NET = """
import torch.nn as nn
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(784, 64), nn.Linear(64, 10)
    def forward(self, x):
        return self.fc2(self.fc1(x.flatten(1)).relu())
"""


def test_an_assumed_rate_is_never_called_yours(tmp_path, synth, capsys):
    (tmp_path / "net.py").write_text(NET)
    main(["doctor", f"{tmp_path / 'net.py'}:Net", *synth])
    out = capsys.readouterr().out
    assert f"lr {ASSUMED_LR:g} (assumed: no --lr given)" in out
    assert "yours:" not in out and "assumed:" in out
    main(["doctor", f"{tmp_path / 'net.py'}:Net", "--lr", "0.05", *synth])
    out = capsys.readouterr().out
    assert "(assumed" not in out and "assumed:" not in out and "yours: 0.05" in out


def test_help_names_the_real_default_rate(capsys):
    with pytest.raises(SystemExit):
        main(["doctor", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "default 0.1" not in out and f"{ASSUMED_LR:g}, assumed" in out


def test_a_plain_state_dict_is_told_how_to_be_examined(tmp_path, synth, capsys):
    (tmp_path / "net.py").write_text(NET)
    from mnistlab.doctor.loading import load_user_model

    model = load_user_model(f"{tmp_path / 'net.py'}:Net")
    torch.save(model.state_dict(), tmp_path / "state.pt")
    assert main(["doctor", "--checkpoint", str(tmp_path / "state.pt"), *synth]) != 0
    err = capsys.readouterr().err
    assert "plain state_dict" in err and "--weights" in err
    code = main(["doctor", f"{tmp_path / 'net.py'}:Net", "--weights",
                 str(tmp_path / "state.pt"), *synth])
    out = capsys.readouterr().out
    assert code in (0, 1) and "state.pt" in out
    torch.save({"fc1.weight": torch.zeros(3, 3)}, tmp_path / "wrong.pt")
    assert main(["doctor", f"{tmp_path / 'net.py'}:Net", "--weights",
                 str(tmp_path / "wrong.pt"), *synth]) != 0
    assert "does not fit the model" in capsys.readouterr().err


def _fake_runs(monkeypatch, ends: dict[float, float]):
    from mnistlab.doctor import probe

    def short_run(model, batches, check, loss, factory, lr, steps, seed=0):
        end = next(v for k, v in ends.items() if abs(k - lr) < 1e-9 * max(k, 1))
        return probe.RunResult(lr, 2.322, end, diverged=end > 4.644)

    monkeypatch.setattr(probe, "short_run", short_run)
    return probe


def test_a_rate_that_raises_the_loss_is_not_healthy(monkeypatch):
    probe = _fake_runs(monkeypatch, {0.003: 2.30, 0.03: 2.10, 0.3: 2.554, 3.0: 50.0})
    batch = (torch.zeros(2, 4), torch.zeros(2, dtype=torch.long))
    _, findings = probe.lr_probe(torch.nn.Linear(4, 10), [batch], batch, None, None, 0.3, 8,
                                 "SGD")
    assert [(f.name, f.severity) for f in findings] == [("lr-raises-loss", "warning")]
    assert "2.322 -> 2.554" in findings[0].title
    # with a warm-up from a rate that lowers the loss, the peak's rise is only a note
    _, findings = probe.lr_probe(torch.nn.Linear(4, 10), [batch], batch, None, None, 0.3, 8,
                                 "SGD", warmup_lr=0.03)
    assert [(f.name, f.severity) for f in findings] == [("lr-raises-loss", "note")]
