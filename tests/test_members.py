"""--members K: an ensemble of independently trained members, saved and read as one model;
Ctrl-C in a member and --resume; --split-seed; what is refused, in one line."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch

from mnistlab.checkpoint import load_checkpoint, load_model
from mnistlab.cli import main
from mnistlab.data.pipeline import Split
from mnistlab.errors import MnistlabError
from mnistlab.evaluate import checkpoint_split, evaluate
from mnistlab.models import create_model
from mnistlab.models.registry import check_model_spec
from mnistlab.train import Callback, StepInfo, TrainingInterrupted, resolve_config, train
from mnistlab.train.members import SEED_STEP, ensemble_config, member_config


def config(tmp_path, name: str, **overrides):
    options = {"model": "mlp", "model_args": {"hidden": "32"}, "epochs": 2, "batch_size": 32,
               "val_size": 100, "runs_dir": str(tmp_path / "runs"), "name": name,
               "bf16": "off", "threads": 1, "members": 2, "outlier_exposure": "off",
               **overrides}
    return resolve_config(**options)


def quiet(cfg, data, **kwargs):
    return train(cfg, data=data, stream=io.StringIO(), **kwargs)


# ---- the model ---------------------------------------------------------------------------------

def test_the_ensemble_s_softmax_is_the_mean_of_its_members():
    torch.manual_seed(0)
    model = create_model("ensemble", base="mlp", members=3, base_args='{"hidden": "16"}').eval()
    x = torch.randn(5, 1, 28, 28)
    mean = torch.stack([torch.softmax(m(x), 1) for m in model.members]).mean(0)
    assert torch.allclose(torch.softmax(model(x), 1), mean, atol=1e-6)
    assert torch.allclose(model(x).exp().sum(1), torch.ones(5), atol=1e-5)  # log-probabilities


@pytest.mark.parametrize("kwargs, message", [
    ({"base": "ensemble", "members": 2, "base_args": ""}, "cannot itself be an ensemble"),
    ({"base": "mlp", "members": 17, "base_args": ""}, "members"),
    ({"base": "mlp", "members": 2, "base_args": "{hidden"}, "not a JSON object"),
    ({"base": "mlp", "members": 2, "base_args": '{"depth": 3}'}, "no argument depth"),
])
def test_a_bad_ensemble_description_in_a_file_is_a_one_line_error(kwargs, message):
    spec = {"name": "ensemble", "kwargs": kwargs}
    with pytest.raises(MnistlabError, match=message) as e:
        check_model_spec(spec, {}, "bad.pt")
    assert "\n" not in str(e.value) and str(e.value).startswith("bad.pt")


# ---- training ----------------------------------------------------------------------------------

def test_members_share_the_validation_split_and_differ_in_seed(tmp_path):
    cfg = config(tmp_path, "e", seed=3)
    members = [member_config(cfg, tmp_path / "e", i) for i in range(2)]
    assert [m.seed for m in members] == [3, 3 + SEED_STEP]
    assert {m.validation_seed for m in members} == {3} and {m.members for m in members} == {1}


def test_an_ensemble_run_trains_its_members_and_reads_as_one_model(tmp_path, synthetic_data):
    result = quiet(config(tmp_path, "e"), synthetic_data)
    run = result.run_dir
    assert sorted(p.name for p in (run / "members").iterdir()) == ["member-0", "member-1"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["model"] == "ensemble" and len(summary["members"]) == 2
    assert summary["train_seconds"] == pytest.approx(
        sum(m["train_seconds"] for m in summary["members"]))
    model, normalizer, state = load_model(run)  # weights_only, checked like any checkpoint
    assert type(model).__name__ == "Ensemble" and len(model.members) == 2
    # the members are the members' own best checkpoints
    for member, m in zip(model.members, summary["members"], strict=True):
        own, _, _ = load_model(m["run"])
        for key, value in own.state_dict().items():
            assert torch.equal(member.state_dict()[key], value), key
    # the ensemble is validated on the members' validation images, none of which it trained on
    val = checkpoint_split(state, synthetic_data, "val")
    member_val = checkpoint_split(load_checkpoint(summary["members"][1]["run"]),
                                  synthetic_data, "val")
    assert torch.equal(val.images, member_val.images)
    again = evaluate(model, Split(val.images, val.labels), normalizer)
    assert again.accuracy == pytest.approx(summary["best_val_accuracy"])
    assert summary["test_accuracy"] >= 0.8  # it learnt (chance is 0.1)
    assert ensemble_config(run).members == 2 and ensemble_config(run / "members/member-0") is None


class InterruptSecondMember(Callback):
    """Ctrl-C at step 5 of the second member."""

    def __init__(self) -> None:
        self.started = 0

    def on_train_start(self, trainer) -> None:
        self.started += 1

    def on_step(self, info: StepInfo) -> None:
        if self.started == 2 and info.step == 5:
            raise KeyboardInterrupt


def test_ctrl_c_in_a_member_then_resume_gives_the_uninterrupted_ensemble(tmp_path,
                                                                         synthetic_data):
    straight = quiet(config(tmp_path, "straight"), synthetic_data)
    with pytest.raises(TrainingInterrupted) as e:
        quiet(config(tmp_path, "stopped"), synthetic_data, callbacks=[InterruptSecondMember()])
    assert "member 2/2" in str(e.value) and "--resume" in str(e.value)
    stopped = tmp_path / "runs" / "stopped"
    assert (stopped / "members/member-1/last.pt").is_file()
    assert not (stopped / "best.pt").exists()
    resumed = quiet(config(tmp_path, "ignored"), synthetic_data, resume=stopped)
    assert resumed.run_dir == stopped
    a, b = (load_checkpoint(r.run_dir)["state_dict"] for r in (straight, resumed))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed.summary["test_accuracy"] == straight.summary["test_accuracy"]


def test_split_seed_keeps_the_validation_images_across_seeds(tmp_path, synthetic_data):
    runs = [quiet(resolve_config(model="mlp", model_args={"hidden": "16"}, epochs=1,
                                 val_size=100, runs_dir=str(tmp_path), name=f"s{seed}",
                                 bf16="off", threads=1, seed=seed, split_seed=7,
                                 outlier_exposure="off"),
                  synthetic_data).run_dir for seed in (1, 2)]
    vals = [checkpoint_split(load_checkpoint(r), synthetic_data, "val") for r in runs]
    assert torch.equal(vals[0].images, vals[1].images)
    other = checkpoint_split({"config": {"seed": 1, "val_size": 100}}, synthetic_data, "val")
    assert not torch.equal(other.images, vals[0].images)


# ---- refusals ----------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--members", "0"], "--members must be 1..16, got 0"),
    (["--members", "2", "--outlier-exposure", "on"], "not with outlier exposure"),
    (["--model", "ensemble"], "invalid choice: 'ensemble'"),  # not in the zoo
    (["--members", "2", "--backend", "numpy", "--model", "mlp"], "numpy backend"),
    (["--members", "2", "--report"], "--report: an ensemble run"),
])
def test_what_an_ensemble_cannot_do_is_refused_in_one_line(synth, capsys, args, message):
    try:
        code = main(["train", *synth, *args])
    except SystemExit as e:  # a usage error, from argparse
        code = e.code
    assert code != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_an_ensemble_is_resumed_as_planned_not_extended(synth, tmp_path, capsys):
    assert main(["train", *synth, "--members", "2", "--epochs", "1", "--name", "e"]) == 0
    capsys.readouterr()
    run = tmp_path / "runs" / "e"
    assert main(["train", "--resume", str(run), "--epochs", "3"]) != 0
    err = capsys.readouterr().err
    assert "ensemble run" in err and len(err.strip().splitlines()) == 1
    # resumed as planned: every member finished, the ensemble assembled again, same figures
    before = json.loads((run / "summary.json").read_text())["test_accuracy"]
    assert main(["train", "--resume", str(run), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("already finished") == 2
    assert math.isclose(json.loads((run / "summary.json").read_text())["test_accuracy"], before)


def test_an_ensemble_is_not_trained_as_one_model():
    with pytest.raises(MnistlabError, match="--model ensemble: an ensemble is made of members"):
        resolve_config(model="ensemble")


def test_only_the_first_member_s_line_counts_the_command_s_start_up(synth, capsys):
    assert main(["train", *synth, "--members", "2", "--epochs", "1", "--name", "e"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith("test accuracy")]
    assert len(lines) == 3  # two members, then the ensemble
    assert "in all (the whole command" in lines[0] and "in all (the whole command" in lines[2]
    # the second member's time before training is the first member's training: not start-up
    assert "since training started (set-up not counted)" in lines[1]


def test_plot_on_an_ensemble_run_points_at_its_members(tmp_path, synthetic_data):
    from mnistlab.viz.curves import load_run

    run = quiet(config(tmp_path, "e", epochs=1), synthetic_data).run_dir
    with pytest.raises(MnistlabError, match=r"an ensemble run .* its members do") as e:
        load_run(run)
    assert "members/member-1" in str(e.value) and "\n" not in str(e.value)


def test_an_ensemble_exports_to_torchscript_with_the_same_logits(tmp_path, synthetic_data):
    from mnistlab.export import PixelsToLogits, export_torchscript

    run = quiet(config(tmp_path, "e", epochs=1), synthetic_data).run_dir
    model, normalizer, _ = load_model(run)
    wrapped = PixelsToLogits(model, normalizer).eval()
    export_torchscript(wrapped, tmp_path / "e.ts")
    pixels = synthetic_data.test_images[:16].unsqueeze(1).float()
    loaded = torch.jit.load(str(tmp_path / "e.ts"))
    with torch.no_grad():
        assert torch.allclose(loaded(pixels), wrapped(pixels), atol=1e-5)
