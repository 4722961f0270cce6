"""The doctor from outside: the zoo passes clean, the pitfall examples are diagnosed, user
files load (or fail in one line), `mnistlab doctor` and `mnistlab train --doctor` work."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from conftest import draw_digits, synthetic_spec, write_dataset
from mnistlab.cli import main
from mnistlab.data.registry import DATASETS
from mnistlab.doctor import doctor_before_training, examine, examine_config, load_user_model
from mnistlab.doctor.config import optimizer_factory, warmup_lr
from mnistlab.errors import MnistlabError
from mnistlab.models import MODELS, create_model
from mnistlab.train.config import resolve_config

torch.set_num_threads(1)
PITFALLS = Path(__file__).resolve().parents[1] / "examples" / "pitfalls"


def batches(n: int = 192, seed: int = 0, normalize: bool = True):
    images, labels = draw_digits(n, seed)
    x = torch.from_numpy(images).float().unsqueeze(1) / 255
    if normalize:
        x = (x - 0.1307) / 0.3081
    return [(x, torch.from_numpy(labels.astype("int64")))]


@pytest.mark.parametrize("name", list(MODELS))
def test_every_zoo_model_passes_clean_with_its_training_defaults(name):
    config = resolve_config(model=name)
    report = examine(create_model(name), optimizer_factory=optimizer_factory(config),
                     optimizer_name=config.optimizer, lr=config.lr,
                     warmup_lr=warmup_lr(config), batch_size=config.batch_size,
                     epochs=config.epochs, train_size=55000, batches=batches())
    assert report.healthy, report.format()
    assert report.exit_code == 0


# ---- the pitfall examples ------------------------------------------------------------------
@pytest.mark.parametrize(("spec", "fixed", "options", "expected"), [
    ("relu_output.py:Net", "relu_output.py:FixedNet", {"lr": 0.1}, "non-negative-output"),
    ("softmax_dim0.py:Net", "softmax_dim0.py:FixedNet", {}, "softmax-over-batch"),
    ("randn_init.py:Net", "randn_init.py:FixedNet", {}, "initial-loss-too-high"),
    ("full_batch.py:Net", None, {"batch_size": 60000, "epochs": 10}, "too-few-updates"),
    ("relu_log_softmax.py:Net", "relu_log_softmax.py:FixedNet", {"lr": 0.1, "loss_fn": "nll"},
     "non-negative-before-softmax"),
    ("relu_log_softmax.py:sequential_net", "relu_log_softmax.py:FixedNet",
     {"lr": 0.1, "loss_fn": "nll"}, "non-negative-before-softmax"),
    ("relu_log_softmax.py:SigmoidNet", "relu_log_softmax.py:FixedNet",
     {"lr": 0.1, "loss_fn": "nll"}, "squashed-before-softmax"),
    ("dropout_eval.py:Net", "dropout_eval.py:FixedNet", {}, "dropout-ignores-eval"),
    ("dropout_eval.py:ConvNet", "dropout_eval.py:FixedConvNet", {"lr": 0.05},
     "dropout-ignores-eval"),
])
def test_each_pitfall_is_diagnosed_and_its_fix_is_clean(spec, fixed, options, expected):
    options = {"lr": 0.01, **options}
    report = examine(load_user_model(str(PITFALLS / spec)), batches=batches(), train_size=60000,
                     **options)
    finding = report.get(expected)
    assert finding is not None and finding.severity == "error", report.format()
    assert report.exit_code == 1
    assert "softmax-over-batch" not in report.names or expected == "softmax-over-batch"
    if fixed is None:  # full_batch.py: the same model, trained with batches of 128
        fixed = spec
        options.update(batch_size=128, epochs=1)
    clean = examine(load_user_model(str(PITFALLS / fixed)), batches=batches(), train_size=60000,
                    **options)
    assert clean.healthy, clean.format()


# ---- loading a user's model ----------------------------------------------------------------
NET_FILE = """
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Sizes:  # dataclasses need the module registered in sys.modules
    hidden: int = 32

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x):
        return self.fc(x.flatten(1))

def make():
    return Net()

def broken():
    raise RuntimeError("no weights here")

def not_a_model():
    return 42

if __name__ == "__main__":
    raise SystemExit("training must not run on import")
"""


@pytest.fixture
def net_file(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(NET_FILE)
    return path


def test_a_class_or_a_factory_function_loads(net_file):
    assert isinstance(load_user_model(f"{net_file}:Net"), torch.nn.Module)
    assert type(load_user_model(f"{net_file}:make")).__name__ == "Net"


@pytest.mark.parametrize(("suffix", "message"), [
    (":Nope", "defines no 'Nope' (it defines: Net, Sizes, broken, make, not_a_model)"),
    (":broken", "building the model failed: RuntimeError: no weights here"),
    (":not_a_model", "returned a int, not a torch.nn.Module"),
    ("", "expected FILE.py:NAME"),
])
def test_bad_model_specs_fail_in_one_line(net_file, suffix, message):
    with pytest.raises(MnistlabError, match=r"^[^\n]*$") as e:
        load_user_model(f"{net_file}{suffix}")
    assert message in str(e.value)


def test_missing_or_broken_files_fail_in_one_line(tmp_path):
    with pytest.raises(MnistlabError, match="no such file"):
        load_user_model(f"{tmp_path / 'missing.py'}:Net")
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\nraise ImportError('needs torchvision')\n")
    with pytest.raises(MnistlabError, match="importing it failed: ImportError: needs torchvision"):
        load_user_model(f"{bad}:Net")


# ---- the command line, on a registered synthetic data set ----------------------------------
@pytest.fixture
def synth(tmp_path, monkeypatch):
    folder = write_dataset(tmp_path / "synth", n_train=400, n_test=100)
    monkeypatch.setitem(DATASETS, "synth", synthetic_spec(folder))
    return ["--dataset", "synth", "--data-dir", str(folder), "--no-download"]


def test_cli_healthy_zoo_model_exits_0(synth, capsys):
    # 300 training images: batches of 1 make the 300 updates a healthy setup needs.
    assert main(["doctor", "--model", "lenet5", "--batch-size", "1", "--epochs", "1",
                 "--val-size", "100", *synth]) == 0
    out = capsys.readouterr().out
    assert "initial loss" in out and "0 errors, 0 warnings" in out


def test_cli_broken_file_exits_1_with_json(synth, capsys):
    spec = str(PITFALLS / "softmax_dim0.py:Net")
    assert main(["doctor", spec, "--lr", "0.01", "--json", *synth]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["exit_code"] == 1
    assert data["findings"][0]["name"] == "softmax-over-batch"
    assert data["findings"][0]["severity"] == "error"


def test_cli_setup_flags_reach_the_checks(synth, capsys):
    args = ["doctor", "--model", "mlp", "--no-normalize", "--select-on-test",
            "--batch-size", "400", "--epochs", "3", "--val-size", "0", *synth]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "ERROR  too-few-updates: 3 epochs x ceil(400 / 400) = 3 optimizer steps" in out
    assert "ERROR  selects-on-test" in out and "WARNING  inputs-not-normalized" in out


def test_cli_checks_an_eval_function_on_a_checkpoint(synth, tmp_path, capsys):
    from mnistlab.train import train

    result = train(resolve_config(model="pytorch-example", epochs=1, val_size=100, dry_run=True,
                                  runs_dir=str(tmp_path), name="r", bf16="off", dataset="synth",
                                  data_dir=synth[3], download=False), stream=sys.stderr)
    evals = tmp_path / "evals.py"
    evals.write_text("import torch\n\ndef forgetful(model, x):\n    with torch.no_grad():\n"
                     "        return model(x)\n")
    args = ["doctor", "--checkpoint", str(result.run_dir), "--eval", f"{evals}:forgetful",
            "--json", *synth[2:]]
    assert main(args) == 1
    data = json.loads(capsys.readouterr().out)
    assert [f["name"] for f in data["findings"]] == ["evaluated-in-training-mode"]


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "lenet5", "x.py:Net"], "give exactly one of"),
    ([], "give exactly one of"),
    (["nowhere.py:Net"], "nowhere.py: no such file"),
    (["--model", "nope"], "unknown model 'nope'"),
])
def test_cli_bad_input_is_one_line_and_exit_2(synth, capsys, args, message):
    assert main(["doctor", *args, *synth]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mnistlab: error: ") and message in err and err.count("\n") == 1


# ---- mnistlab train --doctor -----------------------------------------------------------------
def test_train_doctor_hook_passes_a_good_config_and_stops_a_bad_one(synth, capsys):
    common = {"dataset": "synth", "data_dir": synth[3], "download": False, "val_size": 100}
    doctor_before_training(resolve_config(model="lenet5", batch_size=1, epochs=1, **common))
    assert "0 errors" in capsys.readouterr().out
    with pytest.raises(MnistlabError) as e:
        doctor_before_training(resolve_config(model="lenet5", batch_size=300, epochs=1,
                                              **common))
    assert e.value.exit_code == 1 and "too-few-updates" in str(e.value)


def test_train_with_doctor_flag_refuses_to_train_on_an_error(synth, tmp_path, capsys):
    args = ["train", "--model", "mlp", "--doctor", "--batch-size", "300", "--epochs", "1",
            "--val-size", "100", "--runs-dir", str(tmp_path / "runs"), *synth]
    assert main(args) == 1
    assert not (tmp_path / "runs").exists()  # training never started


@pytest.mark.real_data
def test_real_mnist_pitfall_through_the_cli(real_mnist, capsys):
    spec = str(PITFALLS / "relu_output.py:Net")
    assert main(["doctor", spec, "--lr", "0.01", "--no-download"]) == 1
    assert "ERROR  non-negative-output" in capsys.readouterr().out
    assert main(["doctor", "--model", "fast", "--no-download"]) == 0


# ---- one entry point from a TrainConfig ----------------------------------------------------
def test_examine_config_counts_the_training_split_the_run_uses(synth):
    from mnistlab.data.dataset import load_dataset

    data = load_dataset("synth", synth[3], False)  # 400 training images
    config = resolve_config(model="mlp", val_size=100, batch_size=64, epochs=1, dataset="synth",
                            data_dir=synth[3], download=False)
    report = examine_config(config, data=data, probe_lr=False)
    assert report.measurements["updates"]["train_size"] == 300
    assert report.measurements["updates"]["total"] == 5  # ceil(300 / 64), not ceil(400 / 64)
    assert report.subject.startswith("mlp; loss cross_entropy; sgd (momentum 0.9")
    # Options override the config; a model can be handed in.
    report = examine_config(config, data=data, model=torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(784, 10), torch.nn.ReLU()), subject="mine",
        epochs=None, probe_lr=False)
    assert "updates" not in report.measurements and report.subject.startswith("mine;")
    assert report.get("non-negative-output") is not None


def test_cli_steps_count_the_validation_hold_out_for_zoo_models_only(synth, capsys):
    base = ["doctor", "--batch-size", "64", "--epochs", "1", "--json", *synth]
    main([*base, "--model", "mlp", "--val-size", "100"])
    main([*base, str(PITFALLS / "relu_output.py:FixedNet")])  # your own loop: all 400
    sizes = [json.loads(chunk)["measurements"]["updates"]["train_size"]
             for chunk in capsys.readouterr().out.split("\n{") if chunk.strip()
             for chunk in [chunk if chunk.startswith("{") else "{" + chunk]]
    assert sizes == [300, 400]
    # As mnistlab train, the default hold-out of 5,000 leaves nothing of 400 images.
    assert main([*base, "--model", "mlp"]) == 2
    assert "--val-size 5000 leaves no training images" in capsys.readouterr().err


def test_a_single_suggested_rate_is_not_printed_as_a_range():
    from mnistlab.doctor.findings import suggestion_text

    points = [{"lr": r} for r in (0.0005, 0.005, 0.05, 0.5)]
    text = suggestion_text((0.05, 0.05), points)
    assert ".." not in text and text.startswith("lr 0.05 (") and "0.005 and 0.5 did worse" in text
    assert suggestion_text((0.01, 0.1), points) == "lr range 0.01 .. 0.1"


def test_the_train_hook_refuses_the_numpy_backend():
    with pytest.raises(MnistlabError, match="--backend numpy"):
        doctor_before_training(resolve_config(model="mlp", backend="numpy"))
