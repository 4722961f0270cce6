"""`mnistlab doctor train.py`: each pitfall script is named, every fixed twin and healthy
script passes clean, the run is stopped cleanly and every hook is restored; the stand-ins
behave like torchvision and Keras.

The scripts train on real MNIST (through the stand-ins), so these tests need it (skipped
without MNISTLAB_DATA, required in CI); each runs with a small budget.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from mnistlab.cli import main
from mnistlab.doctor.script import examine_script, run_script

pytestmark = pytest.mark.real_data  # the scripts' stand-ins read the real MNIST

torch.set_num_threads(1)
SCRIPTS = Path(__file__).resolve().parents[1] / "examples" / "pitfalls" / "scripts"
STEPS, SECONDS = 40, 8.0

# script -> the finding that names its bug (an error or, where figures mislead, a warning)
PITFALLS: dict[str, str] = json.loads((SCRIPTS / "expected.json").read_text())
CLEAN = sorted(p.name for p in SCRIPTS.glob("*.py") if p.name.startswith(("fixed_", "healthy_")))


def examine(name: str, **kwargs):
    return examine_script(SCRIPTS / name, steps=STEPS, seconds=SECONDS, output=io.StringIO(),
                          **kwargs)


def test_every_pitfall_has_a_fixed_twin():
    bugs = sorted(p.name for p in SCRIPTS.glob("*.py") if not p.name.startswith(
        ("fixed_", "healthy_")))
    assert bugs == sorted(PITFALLS)
    assert all((SCRIPTS / f"fixed_{b}").is_file() for b in bugs)
    assert len([c for c in CLEAN if c.startswith("healthy_")]) >= 6


@pytest.mark.parametrize(("script", "expected"), sorted(PITFALLS.items()))
def test_each_pitfall_script_is_named(real_mnist, script, expected):
    report = examine(script)
    finding = report.get(expected)
    assert finding is not None, report.format()
    assert finding.severity in ("error", "warning")
    assert finding.evidence and finding.explanation and finding.fix
    # warnings mislead, errors break training: the exit status follows the errors only
    assert report.exit_code == (1 if report.errors else 0)


@pytest.mark.parametrize("script", CLEAN)
def test_fixed_and_healthy_scripts_pass_clean(real_mnist, script):
    report = examine(script)
    assert not report.errors and not report.warnings, report.format()
    assert report.exit_code == 0
    assert report.measurements["script"]["ended"] in ("budget", "finished")


def test_fix_uses_the_scripts_own_names(real_mnist):
    report = examine("classic_torchvision_loop.py")
    assert "optimizer.zero_grad()" in report.get("zero-grad-missing").fix
    report = examine("loss_kept_as_tensor.py")
    assert "loss.item()" in report.get("loss-accumulated-as-tensor").fix
    report = examine("classic_keras_full_batch.py")
    fix = report.get("too-few-updates").fix
    assert "sgd.zero_grad()" in fix and "cost = loss_fn(clf(xb), yb)" in fix


def test_the_report_says_which_stand_ins_were_used(real_mnist):
    report = examine("healthy_keras_arrays.py")
    assert report.measurements["script"]["stand_ins"] == ["keras.datasets.mnist.load_data"]
    assert "stand-ins used" in report.format()


def test_without_stand_ins_the_missing_import_is_the_error(real_mnist):
    pytest.importorskip("numpy")
    if "keras" in sys.modules or _importable("keras"):
        pytest.skip("Keras is installed here")
    report = examine("healthy_keras_arrays.py", stand_ins=False)
    assert report.names == ["script-failed"]
    assert "ModuleNotFoundError" in report.get("script-failed").evidence["error"]


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


HOOKED = [(torch.Tensor, "backward"), (nn.Module, "__call__"), (nn.Module, "train"),
          (nn.Module, "zero_grad"), (nn.Module, "state_dict"), (torch.optim.Optimizer,
                                                                 "zero_grad"),
          (torch.optim.Optimizer, "__init__"), (DataLoader, "__iter__"), (torch, "save"),
          (F, "cross_entropy"), (F, "nll_loss")]


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "train.py"
    path.write_text(body)
    return path


def test_budget_stops_cleanly_and_every_hook_is_restored(tmp_path):
    before = [getattr(owner, name) for owner, name in HOOKED]
    ops = {name: getattr(torch.Tensor, name) for name in ("__add__", "__iadd__", "__radd__")}
    argv, cwd, path_len = list(sys.argv), Path.cwd(), len(sys.path)
    script = _script(tmp_path, """
import sys, torch
from torch import nn
assert sys.argv[1:] == ["--flag", "x"], sys.argv
x, y = torch.randn(512, 784), torch.randint(0, 10, (512,))
model = nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
with open("log.txt", "w") as log:
    for step in range(100000):
        idx = torch.randint(0, 512, (32,))
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        log.write(f"{step} {loss.item():.3f}\\n")
        log.flush()
""")
    out = io.StringIO()
    run = run_script(script, ["--flag", "x"], steps=25, seconds=60, output=out)
    assert run.ended == "budget" and run.error is None
    assert run.watch.steps >= 25
    # the file the script was writing is there, with every line it wrote
    assert (tmp_path / "log.txt").read_text().count("\n") >= 25
    assert [getattr(owner, name) for owner, name in HOOKED] == before
    assert {name: getattr(torch.Tensor, name) for name in ops} == ops
    assert sys.argv == argv and Path.cwd() == cwd and len(sys.path) == path_len
    assert "Traceback" not in out.getvalue()


def test_script_output_is_indented_and_summarised(tmp_path):
    script = _script(tmp_path, "for i in range(200):\n    print('line', i)\n")
    out = io.StringIO()
    run = run_script(script, steps=5, seconds=5, output=out)
    text = out.getvalue().splitlines()
    assert run.ended == "finished" and run.output_lines == 200
    assert all(line.startswith("  | ") for line in text)
    assert any("more lines" in line for line in text) and text[-1].endswith("line 199")
    assert len(text) < 60


def test_a_script_error_is_reported_not_raised(tmp_path):
    script = _script(tmp_path, "import torch\nraise ValueError('bad config value')\n")
    report = examine_script(script, steps=5, seconds=5, output=io.StringIO())
    finding = report.get("script-failed")
    assert finding is not None and "bad config value" in finding.evidence["error"]
    assert "train.py:2" in finding.evidence["where"]


def test_deliberate_accumulation_is_not_a_missing_zero_grad(tmp_path):
    script = _script(tmp_path, """
import torch
from torch import nn
torch.manual_seed(0)
x, y = torch.randn(256, 20), torch.randint(0, 4, (256,))
model = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 4))
opt = torch.optim.SGD(model.parameters(), lr=0.05)
for epoch in range(30):
    for i in range(0, 256, 16):
        (nn.functional.cross_entropy(model(x[i:i+16]), y[i:i+16]) / 4).backward()
        if (i // 16) % 4 == 3:
            opt.step()
            opt.zero_grad()
""")
    report = examine_script(script, steps=40, seconds=10, output=io.StringIO())
    assert "zero-grad-missing" not in report.names, report.format()
    assert "zero-grad-before-step" not in report.names


# ---- the stand-ins -------------------------------------------------------------------------
def test_stand_ins_behave_like_torchvision_and_keras(real_mnist):
    from mnistlab.doctor import standins

    installed = standins.install()
    try:
        if "torchvision" in installed:
            from torchvision import datasets, transforms

            ds = datasets.MNIST("data", train=False)
            img, label = ds[0]
            assert type(img).__name__ == "Image" and img.size == (28, 28)
            assert isinstance(label, int) and len(ds) == 10000
            assert ds.data.dtype == torch.uint8 and ds.targets.dtype == torch.int64
            t = transforms.Compose([transforms.ToTensor(),
                                    transforms.Lambda(lambda v: v * 2)])(img)
            assert t.shape == (1, 28, 28) and t.dtype == torch.float32
            assert float(t.min()) >= 0 and float(t.max()) <= 2.0
            n = transforms.Normalize((0.5,), (0.5,))(transforms.ToTensor()(img))
            assert float(n.min()) >= -1.0 and float(n.max()) <= 1.0
        if "keras" in installed:
            from keras.datasets import mnist
            from keras.utils import np_utils, to_categorical

            (xtr, ytr), (xte, _) = mnist.load_data()
            assert xtr.shape == (60000, 28, 28) and xtr.dtype == np.uint8
            assert ytr.shape == (60000,) and xte.shape == (10000, 28, 28)
            one_hot = to_categorical(ytr[:5], 10)
            assert one_hot.shape == (5, 10) and one_hot.dtype == np.float32
            assert (one_hot.argmax(1) == ytr[:5]).all()
            assert np_utils.to_categorical is to_categorical
    finally:
        standins.uninstall(installed)
    assert "torchvision" not in sys.modules or not getattr(sys.modules["torchvision"],
                                                           "__mnistlab_standin__", False)


# ---- the command line ----------------------------------------------------------------------
def test_cli_json_prints_only_the_report_and_exits_1_on_an_error(real_mnist, capsys):
    code = main(["doctor", "--json", "--steps", "30", "--seconds", "8",
                 str(SCRIPTS / "no_backward.py")])
    out, _ = capsys.readouterr()
    report = json.loads(out)
    assert code == 1 and report["exit_code"] == 1
    names = [f["name"] for f in report["findings"]]
    assert "backward-never-called" in names
    assert set(report["findings"][0]) == {"name", "severity", "title", "evidence",
                                          "explanation", "fix"}


def test_cli_passes_the_scripts_own_arguments(real_mnist, capsys):
    code = main(["doctor", "--steps", "20", "--seconds", "8",
                 str(SCRIPTS / "healthy_bn_dropout_onecycle.py"), "--epochs", "2",
                 "--batch-size", "32"])
    out, _ = capsys.readouterr()
    assert code == 0
    assert "--epochs 2 --batch-size 32" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["doctor", "missing_script.py"], "no such file"),
    (["doctor", "--lr", "0.1", str(SCRIPTS / "healthy_functional.py")], "--lr"),
    (["doctor", "--model", "lenet5", "--steps", "10"], "--steps"),
])
def test_cli_refuses_what_it_cannot_apply(argv, message, capsys):
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
