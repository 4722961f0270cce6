"""The `mnistlab` command: listings, a train/eval round trip on a registered synthetic data set,
and every error path ending in one `mnistlab: error:` line, exit status 2 and no traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import registered_synth, synthetic_spec
from mnistlab.cli import main
from mnistlab.data.registry import DATASETS
from mnistlab.models import MODELS

TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """A synthetic data set registered as `synth` (MD5-checked like the real ones)."""
    yield from registered_synth(tmp_path_factory)


@pytest.fixture(scope="module")
def cli_run(synth, tmp_path_factory):
    """A run trained through the command line."""
    runs = tmp_path_factory.mktemp("runs")
    code = main(["train", "--dataset", "synth", "--data-dir", str(synth), "--model", "mlp",
                 "--hidden", "32", "--epochs", "2", "--batch-size", "50", "--val-size", "100",
                 "--bf16", "off", "--runs-dir", str(runs), "--name", "cli", "--device", "cpu"])
    assert code == 0
    return runs / "cli"


def run_ok(argv, capsys) -> str:
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def fails(argv, capsys, code: int = 2) -> str:
    """Run a command that must fail; return its one error line."""
    try:
        assert main(argv) == code
    except SystemExit as e:  # argparse's usage errors
        assert e.code == code
    err = capsys.readouterr().err
    assert err.startswith("mnistlab: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.strip()


def test_models_lists_the_zoo(capsys):
    out = run_ok(["models"], capsys)
    for name in MODELS:
        assert f"\n{name} " in out
    assert "lenet5" in out and "44,426" in out  # LeNet-5's parameters


def test_models_json_and_one_model(capsys):
    rows = json.loads(run_ok(["models", "--json"], capsys))
    assert {r["name"] for r in rows} == set(MODELS)
    assert all(r["parameters"] > 0 and r["macs"] > 0 for r in rows)
    out = run_ok(["models", "lenet5"], capsys)
    assert "conv" in out.lower() and "44,426" in out
    layers = json.loads(run_ok(["models", "lenet5", "--json"], capsys))
    assert sum(layer["params"] for layer in layers) == 44_426


def test_train_writes_a_run_and_eval_gives_the_same_count(cli_run, capsys):
    summary = json.loads((cli_run / "summary.json").read_text())
    assert summary["dataset"] == "synth" and summary["test_accuracy"] > 0.5
    result = json.loads(run_ok(["eval", str(cli_run), "--json"], capsys))
    assert result["dataset"] == "synth" and result["total"] == 200
    assert result["correct"] == summary["test"]["correct"]
    assert result["confusion_matrix"] == summary["test"]["confusion_matrix"]
    out = run_ok(["eval", str(cli_run / "last.pt"), "--device", "cpu"], capsys)
    assert f"({result['correct']}/200)" in out
    assert "per-class accuracy" in out and "true\\pred" in out


def test_eval_on_the_runs_own_train_and_validation_splits(cli_run, capsys):
    result = json.loads(run_ok(["eval", str(cli_run), "--split", "train", "--json"], capsys))
    assert result["total"] == 500  # 600 training images, 100 of them held out
    val = json.loads(run_ok(["eval", str(cli_run), "--split", "val", "--json"], capsys))
    summary = json.loads((cli_run / "summary.json").read_text())
    assert val["total"] == 100 and val["split"] == "val"
    # the split that chose best.pt, rebuilt from the run's seed and size: the same figure
    assert val["accuracy"] == summary["best_val_accuracy"]


def test_eval_of_a_run_without_best_pt_needs_last(cli_run, tmp_path, capsys):
    stopped = tmp_path / "stopped-at-batch-1"
    stopped.mkdir()
    state = torch.load(cli_run / "last.pt", weights_only=True)
    torch.save({**state, "epoch": 0, "batch": 1, "step": 1}, stopped / "last.pt")
    err = fails(["eval", str(stopped)], capsys)
    assert "no best.pt" in err and "pass --last" in err
    out = run_ok(["eval", str(stopped), "--last"], capsys)
    assert "accuracy" in out
    code = main(["eval", str(stopped), "--last", "--json"])
    captured = capsys.readouterr()
    assert code == 0
    assert f"using {stopped / 'last.pt'}" in captured.err and "mid-epoch" in captured.err


def test_data_shows_files_and_statistics(synth, capsys):
    info = json.loads(run_ok(["data", "--dataset", "synth", "--data-dir", str(synth), "--json"],
                             capsys))
    assert info["train"]["count"] == 600 and sum(info["train"]["class_counts"]) == 600
    assert all(f["origin"] == "--data-dir" for f in info["files"].values())


def test_dry_run_via_the_command_line(synth, tmp_path, capsys):
    out = run_ok(["train", "--dataset", "synth", "--data-dir", str(synth), "--model", "lenet5",
                  "--dry-run", "--val-size", "100", "--runs-dir", str(tmp_path), "--name", "d"],
                 capsys)
    assert out.strip().splitlines()[-1].startswith("DRY RUN (not a result): test accuracy")
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["dry_run"] is True
    assert json.loads((tmp_path / "d" / "config.json").read_text())["dry_run"] is True


def test_resume_of_a_finished_run_changes_nothing(cli_run, capsys):
    before = {p.name: p.read_bytes() for p in cli_run.iterdir()}
    out = run_ok(["train", "--resume", str(cli_run)], capsys)
    assert "already finished (2 of 2 epochs" in out and "nothing changed" in out
    after = {p.name: p.read_bytes() for p in cli_run.iterdir()}
    assert after == before  # summary.json (wall time, figures) too, not only last.pt


def test_resume_with_doctor_examines_the_runs_model_and_data(cli_run, capsys, monkeypatch):
    import mnistlab.doctor

    seen = []
    monkeypatch.setattr(mnistlab.doctor, "doctor_before_training",
                        lambda config, data=None, **_: seen.append((config, data.name)))
    before = (cli_run / "summary.json").read_bytes()
    run_ok(["train", "--resume", str(cli_run), "--doctor"], capsys)  # mnist on the command line
    ((config, data_name),) = seen
    assert (config.model, config.model_args, config.dataset, data_name) == (
        "mlp", {"hidden": "32"}, "synth", "synth")
    assert (cli_run / "summary.json").read_bytes() == before


def test_train_help_reads_right(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for wrong in ("(default: None)", "(default: True)", "(default: False)", "(default: [])"):
        assert wrong not in out
    assert "--epochs EPOCHS (default: 1)" in out  # the default recipe's value, not TrainConfig's 2
    assert "--nesterov, --no-nesterov (default: on)" in out


def test_the_numpy_backend_refuses_options_it_would_ignore(synth, tmp_path, capsys):
    base = ["train", "--backend", "numpy", "--dataset", "synth", "--data-dir", str(synth),
            "--runs-dir", str(tmp_path / "runs")]
    for extra, message in [(["--tensorboard"], "--tensorboard: not supported by the numpy"),
                           (["--device", "cuda"], "--device cuda: not supported by the numpy"),
                           (["--nesterov"], "--nesterov: not supported by the numpy"),
                           (["--channels-last"], "--channels-last: not supported"),
                           (["--threads", "1"], "--threads 1: not supported")]:
        assert message in fails(base + extra, capsys), extra
    assert not (tmp_path / "runs").exists()  # no config.json recording what was not used


def test_the_numpy_backend_logs_steps(synth, tmp_path, capsys):
    from mnistlab.train.rundir import read_metrics

    run_ok(["train", "--backend", "numpy", "--dataset", "synth", "--data-dir", str(synth),
            "--hidden", "16", "--epochs", "1", "--batch-size", "50", "--val-size", "100",
            "--log-interval", "3", "--deterministic", "--runs-dir", str(tmp_path),
            "--name", "np"], capsys)
    rows = read_metrics(tmp_path / "np" / "metrics.csv")
    assert [r["step"] for r in rows if r["kind"] == "step"] == [3, 6, 9]
    config = json.loads((tmp_path / "np" / "config.json").read_text())
    assert config["resolved"]["device"] == "cpu (numpy)" and config["device"] == "auto"


def test_error_paths(cli_run, synth, tmp_path, capsys):
    text = tmp_path / "notes.pt"
    text.write_text("just text\n")
    empty_run = tmp_path / "empty-run"
    empty_run.mkdir()
    cases = [
        (["eval", str(tmp_path / "missing.pt")], "missing.pt: no such file or directory"),
        (["eval", str(text)], "notes.pt: not a readable PyTorch checkpoint"),
        (["eval", str(empty_run)], "no best.pt or last.pt in this run directory"),
        (["predict", str(text), str(text)], "notes.pt: not a readable PyTorch checkpoint"),
        (["eval", str(cli_run), "--dataset", "nope"], "argument --dataset: invalid choice"),
        (["train", "--epochs", "0"], "--epochs must be at least 1"),
        (["train", "--model-arg", "oops"], "expected NAME=VALUE, got 'oops'"),
        (["train", "--model", "mlp", "--model-arg", "depth=3"], "takes no depth"),
        (["train", "--model", "nope"], "argument --model: invalid choice"),
        (["train", "--recipe", "nope"], "argument --recipe: invalid choice"),
        (["train", "--resume", str(empty_run)], "no best.pt or last.pt"),
        (["eval", str(cli_run), "--device", "tpu"], "--device: unknown device 'tpu'"),
        (["eval", str(cli_run), "--batch-size", "0"], "--batch-size must be at least 1"),
        (["eval"], "the following arguments are required: CHECKPOINT_OR_RUN"),
    ]
    for argv, message in cases:
        assert message in fails(argv, capsys), argv


def test_a_weights_file_of_another_model_is_refused(cli_run, tmp_path, capsys):
    state = torch.load(cli_run / "best.pt", weights_only=True)
    state["model"] = {"name": "lenet5", "kwargs": {}}
    torch.save(state, tmp_path / "tampered.pt")
    assert "weights do not fit model 'lenet5'" in fails(["eval", str(tmp_path / "tampered.pt")],
                                                        capsys)


def test_missing_data_lists_what_to_fetch(synth, tmp_path, capsys):
    empty = tmp_path / "no-data"
    empty.mkdir()
    code = main(["train", "--dataset", "synth", "--data-dir", str(empty), "--no-download",
                 "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith("mnistlab: error: Synthetic digits: could not find or download 4 file")
    assert f"Put these files in {empty}" in err and "train-images-idx3-ubyte.gz  md5 " in err
    assert not (tmp_path / "runs").exists()  # nothing half-made


# ---- as a separate process ----------------------------------------------------------------

def mnistlab(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mnistlab", *args], capture_output=True,
                          text=True, timeout=120, **kwargs)


def test_python_m_mnistlab(capsys):
    done = mnistlab("models")
    assert done.returncode == 0 and "fast" in done.stdout
    done = mnistlab("--version")
    assert done.returncode == 0 and done.stdout.startswith("mnistlab ")


def test_subprocess_error_is_one_line(tmp_path):
    done = mnistlab("eval", str(tmp_path / "nope.pt"))
    assert done.returncode == 2
    assert done.stderr == f"mnistlab: error: {tmp_path / 'nope.pt'}: no such file or directory\n"


# Run the CLI with the synthetic data set registered (argv: DATA_DIR, then mnistlab's args).
DRIVER = f"""
import sys
from pathlib import Path
sys.path.insert(0, {str(TESTS)!r})
from conftest import synthetic_spec
from mnistlab.data.registry import DATASETS
DATASETS["synth"] = synthetic_spec(Path(sys.argv[1]))
from mnistlab.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_sigint_during_training_saves_last_pt_and_exits_130(synth, tmp_path):
    args = ["train", "--dataset", "synth", "--data-dir", str(synth), "--model", "mlp",
            "--hidden", "32", "--epochs", "500", "--batch-size", "10", "--val-size", "100",
            "--bf16", "off", "--runs-dir", str(tmp_path), "--name", "sigint", "--threads", "1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen([sys.executable, "-c", DRIVER, str(synth), *args], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        for line in child.stdout:  # wait until it is in the middle of training
            if line.startswith("epoch 1/500") or time.monotonic() > deadline:
                break
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    run = tmp_path / "sigint"
    assert child.returncode == 130, err
    assert err.startswith("mnistlab: error: interrupted at epoch ") and err.count("\n") == 1
    assert f"saved {run / 'last.pt'}" in err and "Traceback" not in err
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["step"] >= 40 and state["epoch"] * 50 + state["batch"] == state["step"]


def test_resume_says_which_options_it_ignores(tmp_path, capsys):
    from mnistlab.cli import build_parser
    from mnistlab.cli.train import options_ignored_on_resume

    parser = build_parser()
    args = parser.parse_args(["train", "--resume", "r", "--epochs", "9", "--lr", "0.1",
                              "--device", "cpu", "--threads", "1"])
    assert options_ignored_on_resume(args) == ["--lr"]  # --epochs extends the run
    assert options_ignored_on_resume(parser.parse_args(["train", "--resume", "r"])) == []


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_kill_9_in_the_middle_of_an_epoch_then_resume(synth, tmp_path, capsys):
    from mnistlab.train.rundir import read_metrics

    common = ["--dataset", "synth", "--data-dir", str(synth), "--model", "mlp", "--hidden", "32",
              "--epochs", "3", "--batch-size", "1", "--lr", "0.01", "--val-size", "100",
              "--bf16", "off", "--runs-dir", str(tmp_path), "--threads", "1", "--seed", "3"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen([sys.executable, "-c", DRIVER, str(synth), "train", *common,
                              "--name", "killed"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    run = tmp_path / "killed"
    try:
        deadline = time.monotonic() + 60
        for line in child.stdout:  # epoch 1 is done: its checkpoint is being written
            if line.startswith("epoch 1/3") or time.monotonic() > deadline:
                break
        while not (run / "last.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)  # into epoch 2 (500 steps of one image each)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        child.kill()
    assert child.returncode == -signal.SIGKILL
    assert not (run / "summary.json").exists()
    # Nothing half-written: every file the run left reads back.
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["epoch"] >= 1 and state["batch"] == 0
    json.loads((run / "config.json").read_text())
    read_metrics(run / "metrics.csv")

    run_ok(["train", "--resume", str(run)], capsys)
    resumed = json.loads((run / "summary.json").read_text())
    run_ok(["train", *common, "--name", "straight"], capsys)
    straight = json.loads((tmp_path / "straight" / "summary.json").read_text())
    assert resumed["epochs_run"] == straight["epochs_run"] == 3
    assert abs(resumed["test_accuracy"] - straight["test_accuracy"]) <= 0.05  # within noise
    epochs = [r["epoch"] for r in read_metrics(run / "metrics.csv") if r["kind"] == "epoch"]
    assert epochs == [1, 2, 3]  # nothing logged twice


# ---- -o FOLDER, another data set, plurals (issue 20) --------------------------------------

@pytest.mark.parametrize(("argv", "written"), [
    (["plot", "{run}"], ["curves.png"]),
    (["compare", "{run}"], ["compare.png"]),
    (["compare", "{run}", "--format", "svg"], ["compare.svg"]),
    (["mistakes", "{run}", "--dataset", "synth", "--data-dir", "{data}"],
     ["mistakes-confusion.png", "mistakes.png"]),
    (["featuremaps", "{run}", "--index", "0", "--dataset", "synth", "--data-dir", "{data}"],
     ["featuremaps.png"]),
    (["data", "sample", "--dataset", "synth", "--data-dir", "{data}", "--per-class", "2"],
     ["samples.png"]),
])
@pytest.mark.parametrize("slash", ["", "/"])
def test_output_to_an_existing_folder_writes_inside_it(cli_run, synth, tmp_path, capsys, argv,
                                                       written, slash):
    folder = tmp_path / "out"
    folder.mkdir()
    names = {"run": cli_run, "data": synth}
    run_ok([a.format(**names) for a in argv] + ["-o", f"{folder}{slash}"], capsys)
    assert sorted(p.name for p in folder.iterdir()) == written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no out.png beside it


def test_output_to_a_new_folder_named_with_a_slash(cli_run, tmp_path, capsys):
    out = run_ok(["plot", str(cli_run), "-o", f"{tmp_path}/new/"], capsys)
    assert out == f"wrote {tmp_path}/new/curves.png\n"


def test_output_file_names_are_kept(cli_run, tmp_path, capsys):
    run_ok(["plot", str(cli_run), "-o", str(tmp_path / "mine.svg")], capsys)
    run_ok(["plot", str(cli_run), "-o", str(tmp_path / "other"), "--format", "pdf"], capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.svg", "other.pdf"]


def test_eval_on_another_data_set_says_so(cli_run, synth, capsys, monkeypatch):
    """The run learnt `synth`; scored on MNIST-named data its figure means nothing, and the
    text and the JSON both say so (the real MNIST is not needed: the check is by name)."""
    other = synthetic_spec(synth, name="other")
    monkeypatch.setitem(DATASETS, "other", other)
    out = run_ok(["eval", str(cli_run), "--dataset", "other", "--data-dir", str(synth)], capsys)
    warning = ("WARNING: this model was trained on synth, not other: its other figures "
               "measure transfer to another data set")
    assert out.splitlines()[1].startswith(warning)
    assert main(["eval", str(cli_run), "--dataset", "other", "--data-dir", str(synth),
                 "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["trained_on"] == "synth" and report["dataset"] == "other"
    assert "trained on synth, not other" in report["warning"]
    assert captured.err.startswith("mnistlab: warning: this model was trained on synth")
    # its own data set: no warning
    assert "WARNING" not in run_ok(["eval", str(cli_run)], capsys)
    assert main(["eval", str(cli_run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["warning"] is None


def test_plural():
    from mnistlab.text import plural

    assert [plural(n, "thread") for n in (0, 1, 2)] == ["0 threads", "1 thread", "2 threads"]
    assert plural(1, "class", "classes") == "1 class" and plural(12_000, "image") == "12,000 images"
    assert plural("3", "epoch", fmt="") == "3 epochs"


def test_one_of_a_thing_is_singular_in_library_messages():
    from mnistlab.export import ParityCheck

    assert "on 1 mnist test image:" in ParityCheck(1, "mnist test images", 1, 0.0).describe()
    assert "on 2 mnist test images:" in ParityCheck(2, "mnist test images", 2, 0.0).describe()


@pytest.mark.parametrize(("command", "target", "words"), [
    (["convert", "{run}"], "{folder}", "is a folder; give a file name"),
    (["convert", "{run}"], "{file}/m.pt", "is inside {file}, which is a file, not a folder"),
    (["export", "{run}", "--format", "torchscript"], "{folder}", "is a folder; give a file"),
    (["export", "{run}", "--format", "torchscript"], "{file}/a/m.pt",
     "is inside {file}, which is a file"),
])
def test_an_output_file_that_cannot_be_written_is_refused_first(cli_run, tmp_path, capsys,
                                                                 command, target, words):
    folder, file = tmp_path / "folder.pt", tmp_path / "taken.png"
    folder.mkdir()
    file.write_bytes(b"kept")
    names = {"run": cli_run, "folder": folder, "file": file}
    err = fails([*(a.format(**names) for a in command), "-o", target.format(**names)], capsys)
    assert words.format(**names) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.pt", "taken.png"]
    assert file.read_bytes() == b"kept" and not any(folder.iterdir())
