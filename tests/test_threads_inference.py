"""Threads for the inference-style commands (eval, predict over many pictures, the doctor's
probes, the benchmarks): `choose_for_inference` fed made-up step times (never timed), the
forced and GPU paths, and `--threads N` on each command. OMP_NUM_THREADS changes PyTorch's
default count, so the tests that depend on the candidates set it themselves."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from conftest import registered_synth
from mnistlab.cli import main
from mnistlab.cli.evaluate import evaluation_threads
from mnistlab.data.pipeline import Batcher, Normalizer, Split
from mnistlab.errors import MnistlabError
from mnistlab.evaluate import evaluate_batches
from mnistlab.train.threads import PAYS_OFF, choose_for_inference
from test_threads import FakeMachine


@pytest.fixture(autouse=True)
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def choose(fake: FakeMachine, steps: int | None, **kwargs):
    lines: list[str] = []
    choice = choose_for_inference(fake.step, steps=steps, forced=None, counts=[1, 2],
                                  set_threads=fake.set_threads, timer=fake.clock,
                                  say=lines.append, after="adapts while evaluating", **kwargs)
    assert len(lines) == 1 and lines[0] == choice.describe()
    return choice


def test_long_work_is_measured_and_the_faster_count_is_set():
    quiet = FakeMachine({1: 0.02, 2: 0.012})  # two threads 1.7x faster
    choice = choose(quiet, steps=10_000)
    assert (choice.threads, choice.source, quiet.threads) == (2, "measured", 2)
    assert choice.seconds_per_step == pytest.approx({1: 0.02, 2: 0.012})
    assert "1.67x faster than 1" in choice.describe()
    assert "adapts while evaluating" in choice.describe()
    assert "busy" not in choice.describe()

    busy = FakeMachine({1: 0.02, 2: 0.9})  # two threads collapsed under another job
    choice = choose(busy, steps=10_000)
    assert (choice.threads, busy.threads) == (1, 1)
    assert "45.00x faster than 2; a busy machine?" in choice.describe()


def test_short_work_keeps_one_thread_unmeasured():
    fake = FakeMachine({1: 0.01, 2: 0.001})  # two threads would win, but the work is tiny
    choice = choose(fake, steps=3)
    # one untimed and one timed step at one thread, nothing at two
    assert fake.steps_run == 2 and fake.calls == [1, 1] and fake.threads == 1
    assert (choice.threads, choice.source) == (1, "fixed")
    assert "about 0.03 s of work at 1 thread" in choice.describe()
    assert "to pay off" in choice.describe()
    # the boundary: the same step, enough of it to be worth PAYS_OFF times the measuring
    enough = int(PAYS_OFF * 0.15 / 0.01) + 1
    assert choose(FakeMachine({1: 0.01, 2: 0.001}), steps=enough).source == "measured"
    assert choose(FakeMachine({1: 0.01, 2: 0.001}), steps=enough - 2).source == "fixed"


def test_unknown_length_is_measured():
    fake = FakeMachine({1: 0.001, 2: 0.002})
    choice = choose(fake, steps=None)
    assert choice.source == "measured" and choice.threads == 1


def test_forced_count_is_applied_and_nothing_is_timed():
    def never() -> None:
        raise AssertionError("a forced count is not measured")

    choice = choose_for_inference(never, steps=10_000, forced=3)
    assert torch.get_num_threads() == 3
    assert choice.source == "forced" and "--threads 3: forced" in choice.describe()
    with pytest.raises(MnistlabError, match=r"^--threads must be at least 1, got 0$"):
        choose_for_inference(never, steps=1, forced=0)


@pytest.mark.parametrize("device", ["cuda", "mps", torch.device("cuda", 0)])
def test_a_gpu_is_not_measured(device):
    def never() -> None:
        raise AssertionError("on a GPU the CPU threads are not measured")

    lines: list[str] = []
    before = torch.get_num_threads()
    choice = choose_for_inference(never, steps=10_000, forced=None, device=device,
                                  say=lines.append)
    assert choice.source == "fixed" and choice.threads == before
    assert "the CPU threads only feed the device" in lines[0]


@pytest.mark.parametrize("env, counts", [("1", [1]), ("2", [1, 2])])
def test_the_candidates_follow_omp_num_threads(monkeypatch, env, counts):
    monkeypatch.setenv("OMP_NUM_THREADS", env)
    fake = FakeMachine({1: 0.002, 2: 0.001})
    choice = choose_for_inference(fake.step, steps=None, forced=None,
                                  set_threads=fake.set_threads, timer=fake.clock)
    assert choice.counts == counts
    assert choice.source == ("measured" if len(counts) > 1 else "fixed")


def test_evaluation_ticks_every_batch_and_keeps_its_result(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    torch.manual_seed(0)
    images = torch.randint(0, 256, (250, 28, 28), dtype=torch.uint8)
    labels = torch.randint(0, 10, (250,))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    batcher = Batcher(Split(images, labels), 100, Normalizer(0.1, 0.3))
    lines: list[str] = []
    choice, control = evaluation_threads(model, batcher, say=lines.append)
    # three batches of a linear model: far too little to repay measuring
    assert choice.source == "fixed" and control is None and torch.get_num_threads() == 1
    assert lines == [choice.describe()]
    ticks: list[int] = []
    result = evaluate_batches(model, batcher, tick=ticks.append)
    assert ticks == [100, 100, 50] and result.total == 250
    assert result.correct == evaluate_batches(model, batcher).correct


# ---- the commands ----------------------------------------------------------------------

def exit_status(argv: list[str]) -> int:
    """main's status, or that of the usage error argparse exits with."""
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code)


# Each command checks --threads before it reads anything: the paths need not exist.
@pytest.mark.parametrize("before, after", [
    (["eval", "no-such-run"], []),
    (["predict", "no-such-run", "no-such.png"], []),
    (["doctor", "--model", "mlp"], []),
    (["doctor"], ["no-such-script.py"]),  # the doctor's options go before a script
])
@pytest.mark.parametrize("value, message", [
    ("0", "mnistlab: error: --threads must be at least 1, got 0"),
    ("-2", "mnistlab: error: --threads must be at least 1, got -2"),
    ("two", "mnistlab: error: argument --threads: invalid int value: 'two'"),
])
def test_a_bad_thread_count_is_one_line_and_exit_2(before, after, value, message, capsys):
    assert exit_status([*before, "--threads", value, *after]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and "Traceback" not in err


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    yield from registered_synth(tmp_path_factory, n_train=400, n_test=120)


@pytest.fixture(scope="module")
def run_dir(synth, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    assert main(["train", "--dataset", "synth", "--data-dir", str(synth), "--model", "mlp",
                 "--hidden", "16", "--epochs", "1", "--batch-size", "50", "--val-size", "100",
                 "--bf16", "off", "--threads", "1", "--runs-dir", str(runs), "--name", "t",
                 "--device", "cpu"]) == 0
    return runs / "t"


def test_eval_forced_threads(run_dir, synth, capsys):
    capsys.readouterr()
    torch.set_num_threads(1)
    assert main(["eval", str(run_dir), "--data-dir", str(synth), "--threads", "3",
                 "--json"]) == 0
    captured = capsys.readouterr()
    assert torch.get_num_threads() == 3
    report = json.loads(captured.out)
    assert report["threads"]["source"] == "forced" and report["threads"]["threads"] == 3
    assert "threads: 3 (--threads 3: forced" in captured.err


def test_eval_default_says_its_choice(run_dir, synth, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--data-dir", str(synth)]) == 0
    captured = capsys.readouterr()
    # 120 test images through a small MLP: not worth measuring, one thread
    assert [line for line in captured.err.splitlines() if line.startswith("threads: ")] == [
        next(line for line in captured.err.splitlines() if "to pay off" in line)]
    assert torch.get_num_threads() == 1 and "accuracy" in captured.out


def test_eval_on_a_gpu_device_does_not_measure(monkeypatch):
    """The GPU path with a CPU-only PyTorch: a batcher that says it is on a GPU; nothing
    may be timed, nor a batch read."""
    import mnistlab.train.threads as threads

    def never(*args, **kwargs):
        raise AssertionError("measured on a GPU")

    monkeypatch.setattr(threads, "choose_threads", never)
    monkeypatch.setattr(Batcher, "epoch", never)
    lines: list[str] = []
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    batcher = Batcher(Split(torch.zeros(10, 28, 28, dtype=torch.uint8),
                            torch.zeros(10, dtype=torch.int64)), 5, Normalizer(0.1, 0.3))
    batcher.device = torch.device("cuda")
    choice, control = evaluation_threads(model, batcher, say=lines.append)
    assert choice.source == "fixed" and control is None and "only feed the device" in lines[0]


@pytest.fixture
def pictures(tmp_path):
    from test_predict import draw

    folder = tmp_path / "pictures"
    folder.mkdir()
    for digit in "173":
        draw(digit).save(folder / f"{digit}.png")
    return folder


def test_predict_forced_and_measured(run_dir, pictures, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    capsys.readouterr()
    assert main(["predict", str(run_dir), str(pictures), "--threads", "3"]) == 0
    captured = capsys.readouterr()
    assert torch.get_num_threads() == 3 and captured.out.count("\n") == 3
    assert captured.err.splitlines() == ["threads: 3 (--threads 3: forced, not measured, "
                                         "does not adapt)"]
    # many pictures, the default: the batched pass is far too short to measure
    assert main(["predict", str(run_dir), str(pictures), "--json"]) == 0
    captured = capsys.readouterr()
    assert torch.get_num_threads() == 1 and len(json.loads(captured.out)["predictions"]) == 3
    [line] = captured.err.splitlines()
    assert line.startswith("threads: 1 (about ") and "to pay off" in line
    # one picture: one thread, nothing said
    torch.set_num_threads(2)
    assert main(["predict", str(run_dir), str(pictures / "1.png")]) == 0
    assert capsys.readouterr().err == "" and torch.get_num_threads() == 1


def test_doctor_forced_and_probe_threads(synth, capsys, monkeypatch):
    data = ["--dataset", "synth", "--data-dir", str(synth), "--no-download"]
    capsys.readouterr()
    assert main(["doctor", "--model", "mlp", "--epochs", "1", "--val-size", "100",
                 "--threads", "3", *data]) in (0, 1)
    err = capsys.readouterr().err
    assert torch.get_num_threads() == 3 and "threads: 3 (--threads 3: forced" in err

    from mnistlab.cli.doctor import probe_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    x = torch.zeros(64, 1, 28, 28)
    choice = probe_threads(model, x, None, "cpu")  # a linear model's probes: too short
    assert choice.threads == 1 and "to pay off" in choice.describe()
    assert probe_threads(None, None, None, "cpu").threads == 1
    broken = torch.nn.Linear(3, 10)  # fits neither (B, 1, 28, 28) nor (B, 784)
    assert "could not be timed" in probe_threads(broken, x, None, "cpu").describe()
    assert "only feed the device" in probe_threads(model, x, None, "cuda").describe()


@pytest.mark.parametrize("command", ["eval", "predict", "doctor"])
def test_help_shows_threads_and_imports_no_torch(command):
    code = ("import sys\nfrom mnistlab.cli import main\n"
            "try:\n    main([sys.argv[1], '--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code, command], capture_output=True,
                          text=True, timeout=120)
    assert "--threads N" in done.stdout
    assert done.stderr.strip().splitlines()[-1] == "False"


SCRIPT = """
import torch
print("started with", torch.get_num_threads(), "threads")
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(12):
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
"""


def test_doctor_script_starts_at_the_forced_count_and_probes_get_their_own(tmp_path, capsys,
                                                                           monkeypatch):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    capsys.readouterr()
    main(["doctor", "--threads", "3", "--steps", "10", str(script)])
    err = capsys.readouterr().err
    assert "started with 3 threads" in err and "threads: 3 (--threads 3: forced" in err
    assert torch.get_num_threads() == 3  # the probes ran at it too
    # by default the script starts at PyTorch's count (as alone), and the probes on its
    # linear model are too short to measure: one thread
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    torch.set_num_threads(2)
    main(["doctor", "--steps", "10", str(script)])
    err = capsys.readouterr().err
    assert "started with 2 threads" in err
    [line] = [x for x in err.splitlines() if x.startswith("threads: ")]
    assert line.startswith("threads: 1 (about ") and torch.get_num_threads() == 1


def test_the_benchmarks_helper_sets_and_says_the_threads(monkeypatch):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from benchmark_common import benchmark_threads, machine

    lines: list[str] = []
    assert benchmark_threads(3, say=lines.append).threads == 3
    assert torch.get_num_threads() == 3 and lines == ["threads: 3 (--threads 3: forced, not "
                                                      "measured, does not adapt)"]
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        monkeypatch.delenv(name, raising=False)
    info = machine(say=lines.append)
    assert info["threads"] == 3 and info["openmp_env"] == {"OMP_NUM_THREADS": "2"}
    assert lines[-1] == "threads: 3 (set by the benchmark; PyTorch's default here: 2)"
    torch.set_num_threads(2)
    machine(say=lines.append)
    assert lines[-1] == "threads: 2 (PyTorch's default)"
    # a short benchmark step: one thread, unmeasured
    assert benchmark_threads(None, lambda: None, steps=10, say=lines.append).threads == 1
    assert "to pay off" in lines[-1] and torch.get_num_threads() == 1
