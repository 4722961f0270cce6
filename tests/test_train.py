"""Training on synthetic data: it learns, leaves a complete run directory, and resumes exactly."""

from __future__ import annotations

import io
import json

import pytest
import torch

from mnistlab.checkpoint import (
    load_checkpoint,
    load_model,
    model_from_checkpoint,
    save_checkpoint,
)
from mnistlab.errors import MnistlabError
from mnistlab.train import Callback, StepInfo, TrainingInterrupted, resolve_config, train
from mnistlab.train.rundir import METRIC_COLUMNS, read_metrics

# 500 training images (100 held out) in batches of 32: 16 steps per epoch.
STEPS = 16


def config(tmp_path, name: str, **overrides):
    options = {"model": "mlp", "model_args": {"hidden": "64"}, "epochs": 2, "batch_size": 32,
               "val_size": 100, "runs_dir": str(tmp_path / "runs"), "name": name,
               "bf16": "off", "log_interval": 4,
               # one thread, fixed: these tests check the loop, not the machine's load
               # (adaptive threads are tested in test_threads.py)
               "threads": None if overrides.get("backend") == "numpy" else 1, **overrides}
    return resolve_config(**options)


@pytest.fixture(autouse=True)
def restore_determinism():
    """`deterministic=True` switches torch's global flag on; keep it from leaking."""
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


def quiet_train(cfg, data, **kwargs):
    return train(cfg, data=data, stream=io.StringIO(), **kwargs)


def last_best_epoch(run_dir) -> int:
    """The epoch a run should keep: the last one with the highest validation accuracy."""
    rows = [r for r in read_metrics(run_dir / "metrics.csv") if r["kind"] == "epoch"]
    best = max(float(r["val_acc"]) for r in rows)
    return max(int(r["epoch"]) for r in rows if float(r["val_acc"]) == best)


def test_a_validation_tie_keeps_the_later_epoch_and_patience_counts_from_a_gain(tmp_path):
    from mnistlab.train.progress import Progress
    from mnistlab.train.runbook import RunBook
    from mnistlab.train.rundir import RunDir

    run = RunDir.create(str(tmp_path), "ties")
    book = RunBook(run, config(tmp_path, "ties", patience=2), Progress(io.StringIO(), False),
                   "mnist")
    saved = []

    def save_last():
        path = run.file("last.pt")
        path.write_text(str(len(saved)))  # stands for the checkpoint of this epoch
        saved.append(path)
        return path

    kept = []
    for epoch, acc in enumerate([0.90, 0.95, 0.95, 0.94, 0.95], start=1):
        row = {"kind": "epoch", "epoch": epoch, "train_acc": 0.9, "val_acc": acc,
               "train_loss": 0.1, "val_loss": 0.1, "lr": 0.1, "images_per_s": 1.0, "seconds": 1.0}
        kept.append(book.end_epoch(row, epoch, save_last))
        if book.early_stop(epoch):
            break
    # epoch 3 ties epoch 2 and is kept; epoch 4 is worse; patience 2 counts from epoch 2,
    # the last strict gain, so the run stops after epoch 4 and never sees epoch 5
    assert kept == [True, True, True, False]
    assert book.best["epoch"] == 3 and book.last_improvement == 2
    assert book.best_path.read_text() == "2"  # epoch 3's checkpoint (the third saved)
    # a checkpoint written before ties were kept has no "improved": its epoch was the gain
    book.best = {"val_acc": 0.95, "epoch": 2}
    assert book.last_improvement == 2


def test_without_a_validation_split_the_last_epoch_is_kept(tmp_path, synthetic_data):
    # Nothing to choose on: the run keeps its last epoch, whatever the training accuracy
    # did (choosing on it would choose on the data trained on).
    result = quiet_train(config(tmp_path, "noval", val_size=0, epochs=3), synthetic_data)
    assert result.summary["best_epoch"] == 3 and result.summary["best_val_accuracy"] is None
    run = result.run_dir
    best = load_checkpoint(run / "best.pt")["state_dict"]
    last = load_checkpoint(run / "last.pt")["state_dict"]
    assert all(torch.equal(best[k], last[k]) for k in best)
    # and there is no validation split to evaluate on: said, not scored as 0/0
    from mnistlab.evaluate import checkpoint_split

    state = load_checkpoint(run / "best.pt")
    with pytest.raises(MnistlabError, match=r"held out no validation images \(--val-size 0"):
        checkpoint_split(state, synthetic_data, "val")
    assert len(checkpoint_split(state, synthetic_data, "train")) == 600


def test_the_numpy_backend_trains_without_a_validation_split_too(tmp_path, synthetic_data):
    result = quiet_train(config(tmp_path, "np-noval", backend="numpy", val_size=0, epochs=3),
                         synthetic_data)
    assert result.summary["best_epoch"] == 3 and result.summary["best_val_accuracy"] is None
    run = result.run_dir
    assert (run / "best.npz").read_bytes() == (run / "last.npz").read_bytes()


def test_patience_without_a_validation_split_is_refused(tmp_path):
    with pytest.raises(MnistlabError, match=r"patience.*--val-size above 0"):
        config(tmp_path, "noval", val_size=0, patience=2)


def test_a_short_run_learns(tmp_path, synthetic_data):
    result = quiet_train(config(tmp_path, "learn"), synthetic_data)
    assert result.summary["test_accuracy"] >= 0.9  # chance is 0.1
    assert result.summary["best_val_accuracy"] >= 0.9


def test_the_run_directory_is_complete(tmp_path, synthetic_data):
    stream = io.StringIO()
    result = train(config(tmp_path, "complete"), data=synthetic_data, stream=stream)
    run = result.run_dir
    assert run == tmp_path / "runs" / "complete"
    assert {p.name for p in run.iterdir()} >= {"config.json", "metrics.csv", "best.pt",
                                               "last.pt", "summary.json"}
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temporary leftovers

    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"] == "mlp" and cfg["epochs"] == 2 and cfg["batch_size"] == 32
    assert set(cfg["data_md5"]) == {f.path.name for f in synthetic_data.files.values()}
    assert cfg["environment"]["torch"] == torch.__version__ and "numpy" in cfg["environment"]
    assert cfg["resolved"]["train_size"] == 500 and cfg["resolved"]["val_size"] == 100

    rows = read_metrics(run / "metrics.csv")
    assert list(rows[0]) == METRIC_COLUMNS
    steps = [r for r in rows if r["kind"] == "step"]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert [r["step"] for r in steps] == list(range(4, 2 * STEPS + 1, 4))
    assert [(r["epoch"], r["step"]) for r in epochs] == [(1, STEPS), (2, 2 * STEPS)]
    assert all(r["val_acc"] is not None and r["train_loss"] > 0 for r in epochs)

    summary = json.loads((run / "summary.json").read_text())
    assert summary == json.loads(json.dumps(result.summary))
    assert summary["test"]["total"] == 200 and len(summary["test"]["confusion_matrix"]) == 10
    assert sum(map(sum, summary["test"]["confusion_matrix"])) == 200
    assert summary["test_accuracy"] == summary["test"]["correct"] / 200
    assert summary["parameters"] == 784 * 64 + 64 + 64 * 10 + 10
    assert summary["steps"] == 2 * STEPS and summary["epochs_run"] == 2
    assert summary["best_val_accuracy"] == max(r["val_acc"] for r in epochs)

    out = stream.getvalue()
    assert "epoch 1/2" in out and "img/s" in out and "test accuracy" in out


def test_checkpoints_load_safely_and_rebuild_the_model(tmp_path, synthetic_data):
    run = quiet_train(config(tmp_path, "ckpt"), synthetic_data).run_dir
    for name in ("best.pt", "last.pt"):
        state = torch.load(run / name, weights_only=True)  # no pickled code
        assert state["format"] == "mnistlab-checkpoint" and state["model"]["name"] == "mlp"
        assert state["optimizer"] and state["rng"]["torch"].dtype == torch.uint8
    model, normalizer, state = load_model(run)
    assert state["path"] == str(run / "best.pt") and not model.training
    assert normalizer.mean == pytest.approx(float(synthetic_data.train_images.double().mean()
                                                  / 255), rel=0.05)
    x = normalizer(synthetic_data.test_images[:5])
    assert model(x).shape == (5, 10)


def test_a_checkpoint_in_another_architecture_is_a_one_line_error(tmp_path, synthetic_data):
    run = quiet_train(config(tmp_path, "arch", epochs=1), synthetic_data).run_dir
    state = load_checkpoint(run)
    for model in ({"name": "lenet5", "kwargs": {}}, {"name": "mlp", "kwargs": {"hidden": "32"}}):
        with pytest.raises(MnistlabError) as e:
            model_from_checkpoint({**state, "model": model})
        message = str(e.value)
        assert message.startswith(f"{run / 'best.pt'}: weights do not fit model "
                                  f"'{model['name']}'")
        assert "\n" not in message and len(message) < 400


def test_an_unreadable_checkpoint_is_a_one_line_error(tmp_path, monkeypatch):
    path = tmp_path / "locked.pt"
    path.write_bytes(b"")

    def denied(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(torch, "load", denied)  # as root, chmod 000 would not stop a read
    with pytest.raises(MnistlabError, match=r"locked\.pt: cannot read \(Permission denied\)"):
        load_checkpoint(path)


def test_resuming_an_inference_only_checkpoint_is_a_one_line_error(tmp_path, synthetic_data):
    run = quiet_train(config(tmp_path, "export", epochs=1), synthetic_data).run_dir
    state = load_checkpoint(run)
    keep = ("model", "state_dict", "normalizer", "dataset", "classes", "config", "epoch")
    save_checkpoint(tmp_path / "weights.pt", {k: state[k] for k in keep})  # as `convert` writes
    with pytest.raises(MnistlabError, match="holds no training state"):
        quiet_train(config(tmp_path, "again"), synthetic_data, resume=tmp_path / "weights.pt")


def straight_and_resumed(tmp_path, data, stop, **overrides):
    """Weights of 2 epochs straight, and of the same run stopped by `stop` then resumed."""
    straight = quiet_train(config(tmp_path, "straight", deterministic=True, **overrides), data)
    cfg = config(tmp_path, "stopped", deterministic=True, **overrides)
    run = stop(cfg)
    resumed = quiet_train(cfg, data, resume=run)
    assert resumed.run_dir == run
    return (load_checkpoint(straight.run_dir / "last.pt"), load_checkpoint(run / "last.pt"),
            straight, resumed)


def assert_identical(a: dict, b: dict) -> None:
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][key]), key
    assert (a["epoch"], a["batch"], a["step"]) == (b["epoch"], b["batch"], b["step"])
    # --ema: state_dict is the average; the trained weights and the count travel in "ema"
    assert ("ema" in a) == ("ema" in b)
    if "ema" in a:
        assert (a["ema"]["decay"], a["ema"]["updates"]) == (b["ema"]["decay"],
                                                            b["ema"]["updates"])
        trained_a, trained_b = a["ema"]["trained_state_dict"], b["ema"]["trained_state_dict"]
        assert trained_a.keys() == trained_b.keys()
        for key, tensor in trained_a.items():
            assert torch.equal(tensor, trained_b[key]), f"trained {key}"


@pytest.mark.parametrize("model, extra", [
    ("mlp", {"model_args": {"hidden": "64"}}),
    # dropout (RNG state), augmentation (per-batch seeds), conv layers in channels_last
    ("convnet-s2-small", {"model_args": {}, "augment": True}),
    # --ema: the average (BatchNorm statistics too, channels-last) and its count
    ("fast", {"model_args": {"width": 4}, "channels_last": True, "ema": 0.9}),
])
def test_resume_after_one_epoch_is_exact(tmp_path, synthetic_data, model, extra):
    def one_epoch(cfg):
        return quiet_train(cfg, synthetic_data, max_epochs=1).run_dir

    a, b, straight, resumed = straight_and_resumed(tmp_path, synthetic_data, one_epoch,
                                                   model=model, **extra)
    assert_identical(a, b)
    assert resumed.summary["test_accuracy"] == straight.summary["test_accuracy"]
    rows = read_metrics(resumed.run_dir / "metrics.csv")
    assert [r["epoch"] for r in rows if r["kind"] == "epoch"] == [1, 2]


class InterruptAt(Callback):
    """Press Ctrl-C after optimizer step `step`."""

    def __init__(self, step: int) -> None:
        self.stop = step

    def on_step(self, info: StepInfo) -> None:
        if info.step == self.stop:
            raise KeyboardInterrupt


@pytest.mark.parametrize("at, extra", [(5, {}), (STEPS, {}), (STEPS + 5, {}),
                                       (STEPS + 5, {"ema": 0.9})])
def test_ctrl_c_saves_last_pt_and_resume_is_exact(tmp_path, synthetic_data, at, extra):
    def interrupted(cfg):
        with pytest.raises(TrainingInterrupted) as e:
            quiet_train(cfg, synthetic_data, callbacks=[InterruptAt(at)])
        assert e.value.exit_code == 130
        run = tmp_path / "runs" / "stopped"
        assert f"saved {run / 'last.pt'}" in str(e.value)
        assert f"mnistlab train --resume {run}" in str(e.value)
        state = load_checkpoint(run / "last.pt")
        assert state["step"] == at and state["epoch"] * STEPS + state["batch"] == at
        assert not (run / "summary.json").exists()
        return run

    a, b, straight, resumed = straight_and_resumed(tmp_path, synthetic_data, interrupted,
                                                   **extra)
    assert_identical(a, b)
    if extra:
        assert "ema" in a and resumed.summary["raw_weights"] == straight.summary["raw_weights"]
    rows = read_metrics(resumed.run_dir / "metrics.csv")
    steps = [r["step"] for r in rows if r["kind"] == "step"]
    assert steps == sorted(set(steps))  # nothing logged twice


def test_dry_run_does_one_batch_each_way(tmp_path, synthetic_data):
    result = quiet_train(config(tmp_path, "dry", dry_run=True, eval_batch_size=50),
                         synthetic_data)
    assert result.summary["steps"] == 2  # one batch in each of the 2 epochs
    assert result.summary["test"]["total"] == 50  # one evaluation batch


def test_patience_stops_early(tmp_path, synthetic_data):
    result = quiet_train(config(tmp_path, "patience", epochs=6, patience=1, lr=1e-9,
                                schedule="none"), synthetic_data)
    # with a learning rate of 1e-9 nothing improves after the first epoch
    assert result.summary["epochs_run"] == 2
    assert result.summary["best_epoch"] == last_best_epoch(result.run_dir)


def test_a_used_run_name_is_refused(tmp_path, synthetic_data):
    quiet_train(config(tmp_path, "taken", dry_run=True), synthetic_data)
    with pytest.raises(MnistlabError, match="run directory exists and is not empty"):
        quiet_train(config(tmp_path, "taken", dry_run=True), synthetic_data)


@pytest.mark.parametrize("overrides, message", [
    ({"epochs": 0}, "--epochs must be at least 1"),
    ({"batch_size": 0}, "--batch-size must be at least 1"),
    ({"lr": -1.0}, "--lr must be positive"),
    ({"optimizer": "rmsprop"}, "--optimizer must be one of"),
    ({"label_smoothing": 1.0}, "--label-smoothing must be in"),
    ({"schedule": "step", "step_size": 0}, "--step-size must be at least 1, got 0"),
    ({"gamma": -1.0}, "--gamma must be positive, got -1.0"),
    ({"gamma": 0.0}, "--gamma must be positive"),
    ({"momentum": -0.5}, "--momentum must not be negative"),
    ({"threads": 0}, "--threads must be at least 1"),
    ({"no_such_option": 1}, "unknown training option(s): no_such_option"),
])
def test_bad_options_are_refused_before_training(overrides, message):
    with pytest.raises(MnistlabError) as e:
        resolve_config(**overrides)
    assert message in str(e.value)


def test_a_used_run_name_is_refused_before_any_work(tmp_path, synthetic_data, monkeypatch):
    (tmp_path / "runs" / "taken").mkdir(parents=True)
    (tmp_path / "runs" / "taken" / "notes.txt").write_text("mine")

    def no_work(*_args, **_kwargs):
        raise AssertionError("work done before the name was checked")

    monkeypatch.setattr("mnistlab.train.loop.load_dataset", no_work)
    monkeypatch.setattr("mnistlab.train.loop.choose_for_run", no_work)
    monkeypatch.setattr("mnistlab.train.threads.choose_for_run", no_work)
    with pytest.raises(MnistlabError, match="taken: run directory exists and is not empty"):
        quiet_train(config(tmp_path, "taken"), None)
    with pytest.raises(MnistlabError, match="run directory exists"):
        quiet_train(config(tmp_path, "taken", backend="numpy", model="mlp"), None)
    assert (tmp_path / "runs" / "taken" / "notes.txt").read_text() == "mine"


def test_a_batch_larger_than_the_training_split_is_refused(tmp_path, synthetic_data):
    with pytest.raises(MnistlabError, match=r"--batch-size 100000 is larger than the training "
                                            r"split \(500 images after --val-size 100\)"):
        quiet_train(config(tmp_path, "huge", batch_size=100000, dry_run=True), synthetic_data)
    assert not (tmp_path / "runs" / "huge").exists()


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_folder(tmp_path,
                                                                       synthetic_data):
    class Boom(Callback):
        def on_step(self, info: StepInfo) -> None:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        quiet_train(config(tmp_path, "failed"), synthetic_data, callbacks=[Boom()])
    assert not (tmp_path / "runs" / "failed").exists()
    assert (tmp_path / "runs").is_dir()  # the parent folder is not the run's to remove


def test_val_size_larger_than_the_training_set(tmp_path, synthetic_data):
    with pytest.raises(MnistlabError, match="--val-size 600 leaves no training images"):
        quiet_train(config(tmp_path, "big-val", val_size=600), synthetic_data)


@pytest.mark.parametrize("optimizer, schedule", [("adam", "cosine"), ("adamw", "step"),
                                                 ("adadelta", "none"), ("sgd", "onecycle")])
def test_every_optimizer_and_schedule_trains(tmp_path, synthetic_data, optimizer, schedule):
    lr = {"adadelta": 1.0, "sgd": 0.05}.get(optimizer, 1e-3)
    result = quiet_train(config(tmp_path, f"{optimizer}-{schedule}", optimizer=optimizer,
                                schedule=schedule, lr=lr, label_smoothing=0.1), synthetic_data)
    assert result.summary["test_accuracy"] >= 0.5


def test_a_run_paused_by_max_epochs_writes_no_summary_until_resumed(tmp_path, synthetic_data):
    cfg = config(tmp_path, "paused", epochs=2)
    paused = quiet_train(cfg, synthetic_data, max_epochs=1)
    assert paused.summary == {}
    assert not (paused.run_dir / "summary.json").exists()
    assert load_checkpoint(paused.run_dir / "last.pt")["epoch"] == 1
    finished = quiet_train(cfg, synthetic_data, resume=paused.run_dir)
    assert json.loads((finished.run_dir / "summary.json").read_text())["epochs_run"] == 2


def test_early_stopping_counts_from_the_checkpointed_best_epoch(tmp_path, synthetic_data):
    class WorseEveryEpoch(Callback):  # make every epoch after the first look worse
        def on_epoch_end(self, trainer, row):
            trainer.best = {"val_acc": 2.0, "epoch": 1}

    result = quiet_train(config(tmp_path, "early", epochs=6, patience=2), synthetic_data,
                         callbacks=[WorseEveryEpoch()])
    assert result.summary["epochs_run"] == 3  # best at 1, no better at 2 and 3: stop


def test_checkpoints_record_the_precision_they_were_tested_in(tmp_path, synthetic_data):
    from mnistlab.checkpoint import evaluation_bf16

    run = quiet_train(config(tmp_path, "fp32", epochs=1), synthetic_data).run_dir
    state = load_checkpoint(run / "best.pt")
    assert state["bf16"] is False
    assert evaluation_bf16(state, torch.device("cpu")) is False
    # Older checkpoints without the key fall back on the configured setting.
    assert evaluation_bf16({"config": {"bf16": "off"}}, torch.device("cpu")) is False


def test_evaluating_an_empty_split_gives_zero_counts():
    from mnistlab.data.pipeline import Normalizer, Split
    from mnistlab.evaluate import evaluate
    from mnistlab.models import create_model

    empty = Split(torch.zeros(0, 28, 28, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64))
    result = evaluate(create_model("lenet5"), empty, Normalizer(0.13, 0.31))
    assert (result.correct, result.total, int(result.confusion.sum())) == (0, 0, 0)


def test_numpy_dry_run_trains_one_batch(tmp_path, synthetic_data):
    result = quiet_train(config(tmp_path, "np-dry", backend="numpy", dry_run=True, epochs=3),
                         synthetic_data)
    assert result.summary["epochs_run"] == 1
    assert result.summary["steps"] == 1


# ---- one run, two backends --------------------------------------------------------------

def test_both_backends_write_the_same_run_files_and_summary_keys(tmp_path, synthetic_data):
    from mnistlab.train.runbook import RESOLVED_KEYS, SUMMARY_KEYS

    # (outlier exposure, a torch-only extra, adds its own `digit_gate` key when on)
    runs = {backend: quiet_train(config(tmp_path, backend, backend=backend, epochs=2,
                                        nesterov=False, channels_last=False,
                                        outlier_exposure="off"),
                                 synthetic_data).run_dir
            for backend in ("torch", "numpy")}
    files = {b: sorted(p.name.replace(".npz", ".pt") for p in run.iterdir())
             for b, run in runs.items()}
    assert files["torch"] == files["numpy"] == ["best.pt", "config.json", "last.pt",
                                                 "metrics.csv", "summary.json"]
    for backend, run in runs.items():
        summary = json.loads((run / "summary.json").read_text())
        assert tuple(summary) == SUMMARY_KEYS, backend
        assert summary["backend"] == backend and summary["dry_run"] is False
        resolved = json.loads((run / "config.json").read_text())["resolved"]
        assert tuple(resolved) == RESOLVED_KEYS, backend
        rows = read_metrics(run / "metrics.csv")
        assert [r["step"] for r in rows if r["kind"] == "step"] == list(range(4, 33, 4)), backend
        assert [r["epoch"] for r in rows if r["kind"] == "epoch"] == [1, 2], backend


def test_the_same_seed_holds_out_the_same_images_in_both_backends(synthetic_data):
    import numpy as np

    from mnistlab.data.pipeline import train_val_split
    from mnistlab.scratch import split_and_standardise

    images, labels = synthetic_data.train_images, synthetic_data.train_labels
    for seed in (0, 7):
        _, val = train_val_split(images, labels, 100, seed)
        splits = split_and_standardise(images.numpy(), labels.numpy(),
                                       synthetic_data.test_images.numpy(),
                                       synthetic_data.test_labels.numpy(), 100, seed)
        np.testing.assert_array_equal(splits.y_val, val.labels.numpy())
        expected = (val.images.numpy().reshape(100, -1) / 255.0 - splits.mean) / splits.std
        np.testing.assert_allclose(splits.x_val, expected, atol=1e-5)


def test_the_numpy_recipe_is_defined_once():
    from mnistlab.scratch import DEFAULT_RECIPE, fit
    from mnistlab.train.config import numpy_recipe

    recipe, arch, train_ = numpy_recipe(), DEFAULT_RECIPE["arch"], DEFAULT_RECIPE["train"]
    assert recipe["model_args"]["hidden"] == ",".join(map(str, arch["sizes"][1:-1]))
    assert {k: recipe[k] for k in ("epochs", "batch_size", "lr", "momentum", "weight_decay")} \
        == {k: train_[k] for k in ("epochs", "batch_size", "lr", "momentum", "weight_decay")}
    import inspect

    defaults = {k: p.default for k, p in inspect.signature(fit).parameters.items()}
    assert all(defaults[k] == v for k, v in train_.items())


@pytest.mark.parametrize("option, message", [
    ({"nesterov": True}, "--nesterov: not supported by the numpy backend"),
    ({"device": "cuda"}, "--device cuda: not supported by the numpy backend"),
    ({"bf16": "on"}, "--bf16 on: not supported by the numpy backend"),
    ({"channels_last": True}, "--channels-last: not supported by the numpy backend"),
    ({"threads": 2}, "--threads 2: not supported by the numpy backend"),
])
def test_the_numpy_backend_refuses_what_it_would_ignore(tmp_path, synthetic_data, option,
                                                       message):
    with pytest.raises(MnistlabError, match=message.replace("-", r"\-")):
        quiet_train(config(tmp_path, "np-refused", backend="numpy", **option), synthetic_data)
    assert not (tmp_path / "runs").exists()  # nothing written, nothing recorded


def test_the_numpy_backend_is_deterministic_and_says_so(tmp_path, synthetic_data):
    outputs, summaries = [], []
    for name in ("np-det-1", "np-det-2"):
        stream = io.StringIO()
        result = train(config(tmp_path, name, backend="numpy", deterministic=True, epochs=1),
                       data=synthetic_data, stream=stream)
        outputs.append(stream.getvalue())
        summaries.append(result.summary)
    assert "deterministic: NumPy training is deterministic given --seed" in outputs[0]
    assert summaries[0]["test"] == summaries[1]["test"]


def test_the_numpy_backend_stops_early_with_patience(tmp_path, synthetic_data):
    result = quiet_train(config(tmp_path, "np-patience", backend="numpy", epochs=6, patience=1,
                                lr=1e-9, schedule="none"), synthetic_data)
    assert result.summary["epochs_run"] == 2
    assert result.summary["best_epoch"] == last_best_epoch(result.run_dir)


def test_training_callbacks_are_refused_by_the_numpy_backend(tmp_path, synthetic_data):
    with pytest.raises(MnistlabError, match="no training callbacks"):
        quiet_train(config(tmp_path, "np-cb", backend="numpy"), synthetic_data,
                    callbacks=[Callback()])


# ---- runs that are not what they seem -----------------------------------------------------

def test_a_dry_run_is_marked_as_one(tmp_path, synthetic_data):
    stream = io.StringIO()
    result = train(config(tmp_path, "dry-marked", dry_run=True), data=synthetic_data,
                   stream=stream)
    assert json.loads((result.run_dir / "summary.json").read_text())["dry_run"] is True
    assert json.loads((result.run_dir / "config.json").read_text())["dry_run"] is True
    last_line = stream.getvalue().strip().splitlines()[-1]
    assert last_line.startswith("DRY RUN (not a result): test accuracy")


def test_deterministic_means_strict(tmp_path, synthetic_data):
    quiet_train(config(tmp_path, "strict", deterministic=True, epochs=1), synthetic_data)
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.is_deterministic_algorithms_warn_only_enabled()


def test_run_names_show_the_data_set():
    from mnistlab.train.rundir import new_run_name

    assert new_run_name("fast", "fashion-mnist").startswith("fast-fashion-mnist-20")
    assert new_run_name("fast", "mnist").startswith("fast-20")  # the default stays implicit


def test_resume_refuses_data_of_another_data_set(tmp_path, synthetic_data):
    import dataclasses

    from mnistlab.data.registry import FASHION_MNIST

    run = quiet_train(config(tmp_path, "other-data"), synthetic_data, max_epochs=1).run_dir
    fashion = dataclasses.replace(synthetic_data, spec=FASHION_MNIST)
    with pytest.raises(MnistlabError, match="trains on mnist, but the data given is "
                                            "fashion-mnist"):
        quiet_train(config(tmp_path, "other-data"), fashion, resume=run)
    assert not (run / "summary.json").exists()


# ---- resume: finished, extended, timed, early-stopped, interrupted twice -------------------

def test_resuming_a_finished_run_changes_nothing(tmp_path, synthetic_data):
    run = quiet_train(config(tmp_path, "finished"), synthetic_data).run_dir
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    stream = io.StringIO()
    result = train(config(tmp_path, "ignored"), data=synthetic_data, resume=run, stream=stream)
    assert "already finished (2 of 2 epochs" in stream.getvalue()
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # summary.json too
    assert result.summary == json.loads(before["summary.json"])


@pytest.mark.parametrize("schedule", ["onecycle", "step"])
def test_extending_a_finished_run(tmp_path, synthetic_data, schedule):
    lr = 0.05
    run = quiet_train(config(tmp_path, "extend", schedule=schedule, lr=lr),
                      synthetic_data).run_dir
    first = json.loads((run / "summary.json").read_text())
    stream = io.StringIO()
    result = train(config(tmp_path, "ignored"), data=synthetic_data, resume=run,
                   resume_epochs=4, stream=stream)
    assert "extending the run from 2 to 4 epochs" in stream.getvalue()
    summary = result.summary
    # the final line's training covers both sessions and says how much was this one's
    here = summary["train_seconds"] - first["train_seconds"]
    assert (f"{summary['train_seconds']:.1f} s training in all sessions ({here:.1f} s of it "
            f"in this one)") in stream.getvalue()
    assert summary["epochs_run"] == 4 and summary["steps"] == 4 * STEPS
    recorded = json.loads((run / "config.json").read_text())
    assert (recorded["epochs"], recorded["schedule_epochs"]) == (4, 2)
    rows = read_metrics(run / "metrics.csv")
    assert [r["epoch"] for r in rows if r["kind"] == "epoch"] == [1, 2, 3, 4]
    tail = [r["lr"] for r in rows if r["kind"] == "step" and r["step"] > 2 * STEPS]
    if schedule == "onecycle":  # a cosine tail from a tenth of the peak down to zero
        assert all(x <= lr * 0.1 + 1e-12 for x in tail) and tail == sorted(tail, reverse=True)
        assert tail[0] > lr * 0.05
    else:  # StepLR continues: x0.7 per epoch (the row shows the rate set for the next step)
        assert tail[-1] == pytest.approx(lr * 0.7 ** 4, rel=1e-4)
    # train_seconds adds up over both sessions
    epoch_seconds = sum(r["seconds"] for r in rows if r["kind"] == "epoch")
    assert summary["train_seconds"] == pytest.approx(epoch_seconds, rel=1e-3)
    assert summary["train_seconds"] > first["train_seconds"]
    assert summary["wall_seconds"] > first["wall_seconds"]


def test_a_run_is_not_shortened_by_resume(tmp_path, synthetic_data):
    run = quiet_train(config(tmp_path, "short", epochs=3), synthetic_data, max_epochs=1).run_dir
    with pytest.raises(MnistlabError, match=r"--epochs 2: .* planned for 3 epochs and has "
                                            r"trained 1; a run can be extended, not shortened"):
        quiet_train(config(tmp_path, "short"), synthetic_data, resume=run, resume_epochs=2)


def test_train_seconds_add_up_over_sessions(tmp_path, synthetic_data):
    cfg = config(tmp_path, "timed", epochs=2)
    with pytest.raises(TrainingInterrupted):  # Ctrl-C in the middle of epoch 1
        quiet_train(cfg, synthetic_data, callbacks=[InterruptAt(5)])
    run = tmp_path / "runs" / "timed"
    state = load_checkpoint(run / "last.pt")
    first, first_wall = state["train_seconds"], state["wall_seconds"]
    assert first > 0 and first_wall >= first  # the part of the epoch done counts
    summary = quiet_train(cfg, synthetic_data, resume=run).summary
    rows = read_metrics(run / "metrics.csv")
    epoch_seconds = sum(r["seconds"] for r in rows if r["kind"] == "epoch")  # this session's
    assert summary["train_seconds"] == pytest.approx(first + epoch_seconds, rel=1e-3)
    assert summary["wall_seconds"] > first_wall + epoch_seconds * 0.99


def test_early_stopping_across_a_resume(tmp_path, synthetic_data):
    # lr 1e-9: nothing improves after epoch 1. With patience 2 the run stops after epoch 3,
    # whether or not it was paused after epoch 2 (the count comes from the checkpoint).
    cfg = config(tmp_path, "early-resumed", epochs=8, patience=2, lr=1e-9, schedule="none")
    paused = quiet_train(cfg, synthetic_data, max_epochs=2)
    assert paused.summary == {}
    result = quiet_train(cfg, synthetic_data, resume=paused.run_dir)
    assert result.summary["epochs_run"] == 3
    assert result.summary["best_epoch"] == last_best_epoch(result.run_dir)


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGINT"), reason="POSIX signals")
def test_a_second_ctrl_c_stops_at_once_and_keeps_the_last_checkpoint(tmp_path, synthetic_data):
    import os
    import signal

    class CtrlCTwice(Callback):
        def on_step(self, info: StepInfo) -> None:
            if info.step == STEPS + 5:
                os.kill(os.getpid(), signal.SIGINT)  # first: stop at the step boundary...
                os.kill(os.getpid(), signal.SIGINT)  # ...second: stop now

    cfg = config(tmp_path, "twice", epochs=3)
    with pytest.raises(TrainingInterrupted) as e:
        quiet_train(cfg, synthetic_data, callbacks=[CtrlCTwice()])
    run = tmp_path / "runs" / "twice"
    assert e.value.exit_code == 130 and "stopped at once" in str(e.value)
    assert f"{run / 'last.pt'} holds the end of epoch 1" in str(e.value)
    state = load_checkpoint(run / "last.pt")  # not overwritten mid-step: still epoch 1's end
    assert (state["epoch"], state["batch"], state["step"]) == (1, 0, STEPS)
    assert not (run / "summary.json").exists()
    resumed = quiet_train(cfg, synthetic_data, resume=run)
    assert resumed.summary["epochs_run"] == 3
