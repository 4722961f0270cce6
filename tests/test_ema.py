"""`--ema DECAY`: the moving average of the weights (train/ema.py) and how a run uses it.

The average is checked against a hand computation and against PyTorch's AveragedModel; a
run with it validates, tests and saves the average, records the trained weights' figures
beside it, trains under torchrun, and the numpy backend refuses it. Exact resume with it is
in test_train.py (test_resume_after_one_epoch_is_exact, test_ctrl_c_saves_...).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from mnistlab.checkpoint import load_checkpoint, load_model, save_checkpoint
from mnistlab.cli import main
from mnistlab.data.pipeline import Split
from mnistlab.errors import MnistlabError
from mnistlab.evaluate import evaluate
from mnistlab.models import create_model
from mnistlab.train import Callback, StepInfo, resolve_config, train
from mnistlab.train.config import TrainConfig
from mnistlab.train.ema import WeightAverage
from test_distributed import launch_two

DECAY = 0.9  # small, so that a few steps move the average well away from its start


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 10))


def sgd_steps(model: nn.Module, k: int, after_step) -> None:
    """k SGD steps on random 8x8 images, calling `after_step()` after each one."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    gen = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(k):
        x = torch.randn(16, 1, 8, 8, generator=gen) * 3 + 1  # BN statistics move too
        y = torch.randint(0, 10, (16,), generator=gen)
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        after_step()


def test_the_average_is_the_hand_computed_ema_of_weights_and_bn_statistics():
    model = tiny()
    average = WeightAverage(model, DECAY)
    expected: dict[str, torch.Tensor] = {}

    def after_step() -> None:
        average.update()
        for name, value in model.state_dict().items():
            value = value.double()
            # the first step copies; then decay * average + (1 - decay) * weights
            expected[name] = (value if name not in expected
                              else DECAY * expected[name] + (1 - DECAY) * value)

    sgd_steps(model, 6, after_step)
    assert average.updates == 6
    got, now = average.module.state_dict(), model.state_dict()
    for name in ("0.weight", "4.bias", "1.weight", "1.running_mean", "1.running_var"):
        assert torch.allclose(got[name].double(), expected[name], rtol=1e-5, atol=1e-6), name
        assert not torch.allclose(got[name], now[name]), f"{name}: not averaged"
    # a count is copied, not blended
    assert int(got["1.num_batches_tracked"]) == int(now["1.num_batches_tracked"]) == 6


def test_the_average_equals_pytorchs_averaged_model_bit_for_bit():
    model = tiny()
    ours = WeightAverage(model, DECAY)
    theirs = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(DECAY), use_buffers=True)

    def after_step() -> None:
        ours.update()
        theirs.update_parameters(model)

    sgd_steps(model, 5, after_step)
    reference = theirs.module.state_dict()
    for name, value in ours.module.state_dict().items():
        if value.is_floating_point():
            assert torch.equal(value, reference[name]), name


def test_the_average_keeps_fp32_and_channels_last_and_the_model_is_untouched():
    model = tiny().to(memory_format=torch.channels_last)
    average = WeightAverage(model, DECAY)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    average.update()
    assert {k: torch.equal(v, before[k]) for k, v in model.state_dict().items()} == {
        k: True for k in before}  # averaging never writes the model's weights
    sgd_steps(model, 2, average.update)
    conv = average.module[0].weight
    assert conv.dtype == torch.float32 and not conv.requires_grad
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert not average.module.training  # evaluated, never trained


@pytest.mark.parametrize("decay", [1.0, 1.5, -0.1, float("nan")])
def test_a_bad_decay_is_refused(decay):
    with pytest.raises(MnistlabError, match="--ema must be between 0 and 1"):
        resolve_config(ema=decay)
    with pytest.raises(MnistlabError, match="--ema"):
        WeightAverage(tiny(), decay)


def test_zero_means_off():
    assert resolve_config(ema=0.0).ema == 0.0
    assert resolve_config().ema is None


# ---- a run with --ema (synthetic data, a tiny BatchNorm conv net) ---------------------------

def run_config(tmp_path, name: str, **overrides):
    options = {"model": "fast", "model_args": {"width": 4}, "epochs": 2, "batch_size": 32,
               "val_size": 100, "runs_dir": str(tmp_path / "runs"), "name": name,
               "bf16": "off", "channels_last": True, "threads": 1, "ema": DECAY,
               **overrides}
    return resolve_config(**options)


class RecordWeights(Callback):
    """The trained weights after every step, averaged by hand in float64."""

    def __init__(self) -> None:
        self.expected: dict[str, torch.Tensor] = {}

    def on_step(self, info: StepInfo) -> None:
        for name, value in info.model.state_dict().items():
            value = value.double()
            self.expected[name] = (value if name not in self.expected else
                                   DECAY * self.expected[name] + (1 - DECAY) * value)


def test_a_run_validates_tests_and_saves_the_average(tmp_path, synthetic_data):
    recorder = RecordWeights()
    stream = io.StringIO()
    result = train(run_config(tmp_path, "ema"), data=synthetic_data, callbacks=[recorder],
                   stream=stream)
    last = load_checkpoint(result.run_dir / "last.pt")
    # the checkpoint's weights are the average of the trained weights (BN statistics too)
    for name, value in last["state_dict"].items():
        if value.is_floating_point():
            assert torch.allclose(value.double(), recorder.expected[name], rtol=1e-4,
                                  atol=1e-5), name
    trained = last["ema"]["trained_state_dict"]
    assert last["ema"]["updates"] == result.summary["steps"] and last["ema"]["decay"] == DECAY
    for name in ("classifier.1.weight", "features.1.running_mean"):
        assert not torch.allclose(trained[name], last["state_dict"][name]), name
    # evaluate/predict/export load the average: best.pt gives the summary's test accuracy
    model, normalizer, _ = load_model(result.run_dir)
    test = Split(synthetic_data.test_images, synthetic_data.test_labels)
    assert evaluate(model, test, normalizer).accuracy == result.summary["test_accuracy"]
    # summary.json has the trained weights' figures beside the average's
    raw = result.summary["raw_weights"]
    assert result.summary["ema"] == {"decay": DECAY, "updates": result.summary["steps"]}
    assert set(raw) == {"epoch", "val_acc", "val_loss", "test_acc", "test_loss"}
    assert raw["epoch"] == 2
    model.load_state_dict(trained)
    assert evaluate(model, test, normalizer).accuracy == raw["test_acc"]
    out = stream.getvalue()
    assert f"EMA {DECAY}:" in out and "without EMA (the trained weights after epoch 2)" in out


def test_the_epoch_rows_validate_the_average(tmp_path, synthetic_data):
    # with a decay this close to 1 the average barely leaves the first step's weights,
    # so its validation accuracy must lag far behind the trained weights'
    result = train(run_config(tmp_path, "slow", ema=0.9999, model="mlp",
                              model_args={"hidden": "64"}, channels_last=None),
                   data=synthetic_data, stream=io.StringIO())
    raw = result.summary["raw_weights"]
    assert raw["val_acc"] >= 0.9
    assert result.summary["best_val_accuracy"] < raw["val_acc"] - 0.2


def test_a_run_without_ema_keeps_its_checkpoint_and_summary_as_before(tmp_path, synthetic_data):
    result = train(run_config(tmp_path, "plain", ema=None), data=synthetic_data,
                   stream=io.StringIO())
    assert "ema" not in load_checkpoint(result.run_dir / "last.pt")
    assert "raw_weights" not in result.summary and "ema" not in result.summary


def test_resuming_an_ema_run_whose_checkpoint_lost_its_ema_state_is_refused(tmp_path,
                                                                            synthetic_data):
    cfg = run_config(tmp_path, "lost")
    run = train(cfg, data=synthetic_data, max_epochs=1, stream=io.StringIO()).run_dir
    state = load_checkpoint(run / "last.pt")
    for key in ("path", "format", "version", "ema"):
        state.pop(key, None)
    save_checkpoint(run / "last.pt", state)
    with pytest.raises(MnistlabError, match="holds no EMA state"):
        train(cfg, data=synthetic_data, resume=run, stream=io.StringIO())


# ---- the command line ------------------------------------------------------------------

@pytest.mark.parametrize("value, message", [
    ("1", "--ema must be between 0 and 1 (e.g. 0.999; 0 for off), got 1.0"),
    ("1.5", "--ema must be between 0 and 1"),
    ("-0.5", "--ema must be between 0 and 1"),
    ("nan", "--ema must be between 0 and 1"),
    ("abc", "argument --ema: invalid float value: 'abc'"),
])
def test_bad_ema_values_are_one_line_exit_2(synth, tmp_path, capsys, value, message):
    try:
        code = main(["train", *synth, "--name", "bad", "--ema", value])
    except SystemExit as e:  # argparse's own errors exit from the parser
        code = e.code
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "runs" / "bad").exists()


def test_the_numpy_backend_refuses_ema(synth, tmp_path, capsys):
    options = [o for o in synth if o not in ("--threads", "1")]  # numpy refuses --threads
    code = main(["train", *options, "--backend", "numpy", "--name", "np", "--ema", "0.999"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "--ema 0.999: not supported by the numpy backend" in err
    assert not (tmp_path / "runs" / "np").exists()


def test_the_numpy_backend_refuses_ema_given_in_a_config_built_by_hand(tmp_path,
                                                                       synthetic_data):
    config = TrainConfig(backend="numpy", model="mlp", ema=0.99, runs_dir=str(tmp_path))
    with pytest.raises(MnistlabError, match=r"--ema 0\.99: not supported by the numpy backend"):
        train(config, data=synthetic_data, stream=io.StringIO())


def test_ema_on_the_command_line_trains_with_it(synth, tmp_path, capsys):
    assert main(["train", *synth, "--name", "cli", "--ema", "0.99", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "EMA 0.99:" in out and "without EMA" in out
    assert load_checkpoint(tmp_path / "runs" / "cli" / "best.pt")["config"]["ema"] == 0.99


def test_the_average_is_a_copy_with_tensors_of_its_own():
    # the average is a deep copy: the model the trainer trains keeps its own tensors
    model = create_model("fast", width=4)
    average = WeightAverage(model, 0.5)
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(average.module.parameters(),
                                                             model.parameters(), strict=True))


def test_two_processes_train_with_the_average(tmp_path):
    """torchrun (gloo, two ranks): DDP keeps the replicas' weights identical, so their
    averages are too; rank 0 validates, saves and reports, as without --ema."""
    def with_ema(source: str) -> str:
        assert "log_interval=5)" in source
        return source.replace("log_interval=5)", f"log_interval=5, ema={DECAY})")

    done, reports = launch_two(tmp_path, with_ema)
    assert reports[0]["weights_sum"] == pytest.approx(reports[1]["weights_sum"], rel=1e-6)
    run_dir = Path(reports[0]["run_dir"])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["ema"] == {"decay": DECAY, "updates": reports[0]["steps"]}
    assert summary["raw_weights"]["test_acc"] > 0.5 and summary["test_accuracy"] > 0.5
    last = load_checkpoint(run_dir / "last.pt")
    assert last["ema"]["updates"] == reports[0]["steps"]
    assert done.stdout.count(f"EMA {DECAY}:") == 1 and done.stdout.count("without EMA") == 1


# ---- benchmarks/best_recipe.py: its table, without training ---------------------------------

def test_the_benchmark_table_sets_the_average_beside_the_trained_weights(capsys):
    from benchmarks import best_recipe

    with_ema = {"best_val_accuracy": 0.996, "test_accuracy": 0.9971, "best_epoch": 24,
                "raw_weights": {"val_acc": 0.995, "test_acc": 0.9965}}
    without = {"best_val_accuracy": 0.9952, "test_accuracy": 0.9966, "best_epoch": 23}
    assert best_recipe.figures(with_ema) == {"val EMA": 0.996, "val raw": 0.995,
                                             "test EMA": 0.9971, "test raw": 0.9965}
    assert best_recipe.figures(without)["val EMA"] is None
    rows = [{"seed": s, **best_recipe.figures(with_ema), "best epoch": 24, "train s": t,
             "command s": t + 10} for s, t in ((0, 300.0), (1, 310.0))]
    text = best_recipe.table(rows)
    assert text.splitlines()[0] == ("| seed | val EMA | val raw | val ensemble | val members | "
                                    "test EMA | test raw | test ensemble | test members | "
                                    "best epoch | train s | command s |")
    assert text.splitlines()[-1] == ("| **mean** | 99.60% | 99.50% | - | - | 99.71% | 99.65% | "
                                     "- | - | - | 305.0 | 315.0 |")
    ensemble = {"best_val_accuracy": 0.9958, "test_accuracy": 0.9972, "best_epoch": None,
                "members": [{"val_accuracy": 0.995, "test_accuracy": 0.9966},
                            {"val_accuracy": 0.9946, "test_accuracy": 0.997}]}
    assert best_recipe.figures(ensemble) == {
        "val EMA": None, "val raw": None, "val ensemble": 0.9958, "val members": 0.9948,
        "test EMA": None, "test raw": None, "test ensemble": 0.9972, "test members": 0.9968}
    assert best_recipe.folder_name(None, None, 2) == "best-members2"
    assert best_recipe.train_options(None, None, [], 2) == ["--members", "2"]
    assert [best_recipe.folder_name(*a) for a in ((None, None), (0.0, None), (0.999, 30))] == [
        "best", "best-no-ema", "best-ema0.999-epochs30"]
    assert best_recipe.train_options(0.999, 30, ["--threads", "2"]) == [
        "--ema", "0.999", "--epochs", "30", "--threads", "2"]
    with pytest.raises(SystemExit) as e:
        best_recipe.parse(["--ema", "1.5"])
    assert e.value.code == 2 and "--ema must be between 0 and 1" in capsys.readouterr().err
    assert best_recipe.parse(["--extra", "--threads 2", "--extra=--no-augment"]).extra == [
        "--threads", "2", "--no-augment"]
