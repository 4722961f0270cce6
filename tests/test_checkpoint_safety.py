"""Checkpoints that load with weights_only=True but lie about their model: the arguments are
checked, the model is built on the `meta` device and compared with the weights before any
memory is allocated, and every command that loads a checkpoint refuses in one line (exit 2)."""

from __future__ import annotations

import math
import resource
import subprocess
import sys

import pytest
import torch

from mnistlab.checkpoint import load_model, save_checkpoint
from mnistlab.cli import main
from mnistlab.errors import MnistlabError
from mnistlab.models import create_model
from mnistlab.models.registry import check_arguments, check_model_spec


def write(path, spec, state_dict=None, **extra):
    if state_dict is None:
        state_dict = create_model("mlp", hidden="8").state_dict()
    save_checkpoint(path, {"model": spec, "state_dict": state_dict,
                           "normalizer": {"mean": 0.1307, "std": 0.3081}, "dataset": "mnist",
                           "classes": [str(i) for i in range(10)], "epoch": 1, **extra})
    return path


HUGE = {"name": "mlp", "kwargs": {"hidden": [1_000_000, 1_000_000]}}

CRAFTED = [
    # (what, model spec, extra state, words in the message)
    ("terabyte MLP", HUGE, {}, "the limit is 100,000,000"),
    ("negative width", {"name": "fast", "kwargs": {"width": -3}}, {}, "width=-3"),
    ("width as text", {"name": "fast", "kwargs": {"width": "16"}}, {}, "expected an integer"),
    ("width as bool", {"name": "fast", "kwargs": {"width": True}}, {}, "expected int"),
    ("dropout infinite", {"name": "convnet-s2-small", "kwargs": {"dropout": math.inf}}, {},
     "finite"),
    ("dropout over 1", {"name": "convnet-s2-small", "kwargs": {"dropout": 7.0}}, {},
     "cannot be built"),
    ("unknown argument", {"name": "lenet5", "kwargs": {"depth": 3}}, {}, "takes no argument"),
    ("kwargs not a dict", {"name": "fast", "kwargs": [16]}, {}, "must be a mapping"),
    ("unknown model", {"name": "resnet9000"}, {}, "unknown model"),
    ("no model", None, {}, "no model description"),
    ("hidden list too long", {"name": "mlp", "kwargs": {"hidden": [1] * 10_000}}, {},
     "at most 64"),
    ("shape mismatch", {"name": "mlp", "kwargs": {"hidden": "9"}}, {}, "[8, 784] in the file"),
    ("weights of another model", {"name": "lenet5", "kwargs": {}}, {}, "missing"),
    ("std zero", {"name": "mlp", "kwargs": {"hidden": "8"}},
     {"normalizer": {"mean": 0.1, "std": 0.0}}, "normalizer"),
    ("classes not a list", {"name": "mlp", "kwargs": {"hidden": "8"}}, {"classes": 5},
     "classes"),
]


@pytest.mark.parametrize(("what", "spec", "extra", "words"), CRAFTED, ids=[c[0] for c in CRAFTED])
def test_crafted_checkpoints_are_refused_in_one_line(tmp_path, what, spec, extra, words):
    path = write(tmp_path / "crafted.pt", spec, **extra)
    with pytest.raises(MnistlabError) as info:
        load_model(path)
    message = str(info.value)
    assert words in message and "\n" not in message and str(path) in message


def test_state_dict_that_is_not_tensors(tmp_path):
    path = write(tmp_path / "c.pt", {"name": "mlp", "kwargs": {"hidden": "8"}},
                 state_dict={"layers.0.weight": [1, 2, 3]})
    with pytest.raises(MnistlabError, match="not a mapping of names to tensors"):
        load_model(path)


def test_the_huge_model_is_never_allocated(monkeypatch):
    """The parameter count comes from the meta device: no real tensor is created."""
    created = []
    original = torch.nn.Linear.reset_parameters

    def spy(self):
        created.append(self.weight.device.type)
        return original(self)

    monkeypatch.setattr(torch.nn.Linear, "reset_parameters", spy)
    with pytest.raises(MnistlabError, match="parameters"):
        check_model_spec(HUGE, {}, "x")
    assert created and set(created) == {"meta"}


def test_every_zoo_model_passes_its_own_check():
    from mnistlab.models import MODELS

    for name in MODELS:
        model = create_model(name)
        check_model_spec(model.mnistlab_spec, model.state_dict(), name)


def test_valid_arguments_pass():
    assert check_arguments("mlp", {"hidden": [200, 200], "activation": "tanh"}) == {
        "hidden": [200, 200], "activation": "tanh"}
    assert check_arguments("mlp", {"hidden": "512,256"})
    assert check_arguments("fast", {"width": 48})


@pytest.mark.parametrize("command", [
    ["eval", "{path}"],
    ["predict", "{path}", "{image}"],
    ["export", "{path}", "-o", "{tmp}/out.onnx"],
    ["doctor", "--checkpoint", "{path}"],
    ["serve", "{path}", "--port", "0"],
])
def test_commands_exit_2_with_one_line(tmp_path, capsys, command):
    from PIL import Image

    path = write(tmp_path / "huge.pt", HUGE)
    image = tmp_path / "digit.png"
    Image.new("L", (28, 28), 0).save(image)
    args = [a.format(path=path, image=image, tmp=tmp_path) for a in command]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("mnistlab: error: ") and len(err.strip().splitlines()) == 1, err
    assert "parameters; the limit is" in err


def test_eval_of_a_terabyte_checkpoint_stays_small(tmp_path):
    """In a child process, so that its peak memory can be read: far below the 3.3 GB the
    unchecked build reached before failing."""
    path = write(tmp_path / "huge.pt", HUGE)
    done = subprocess.run([sys.executable, "-m", "mnistlab", "eval", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    assert peak_mb < 1000, f"child peaked at {peak_mb:.0f} MB"


# ---- checkpoints that lie about their classes, or hold NaN/inf weights (issue 20) ---------

def lying(path, kind: str):
    """A well-formed mlp checkpoint with 3 class names for 10 outputs, or a NaN/inf weight."""
    state_dict = create_model("mlp", hidden="8").state_dict()
    extra = {}
    if kind == "classes":
        extra["classes"] = ["cat", "dog", "bird"]
    else:
        weight = state_dict["layers.0.weight"].clone()
        weight[0, :5] = math.nan if kind == "nan" else math.inf
        state_dict["layers.0.weight"] = weight
    return write(path, {"name": "mlp", "kwargs": {"hidden": "8"}}, state_dict, **extra)


LIES = {"classes": "classes lists 3 names, but the model has 10 outputs",
        "nan": "state_dict['layers.0.weight'] holds 5 NaN or infinite values",
        "inf": "state_dict['layers.0.weight'] holds 5 NaN or infinite values"}


@pytest.mark.parametrize("kind", list(LIES))
def test_lying_checkpoints_are_refused_at_load(tmp_path, kind):
    path = lying(tmp_path / "lie.pt", kind)
    with pytest.raises(MnistlabError) as info:
        load_model(path)
    assert LIES[kind] in str(info.value) and str(path) in str(info.value)


def test_a_numpy_run_with_nan_weights_is_refused(tmp_path):
    from mnistlab.scratch.checkpoint import save_npz
    from mnistlab.scratch.network import MLP

    net = MLP([784, 8, 10], seed=0)
    net.dense[0].W[0, 0] = float("nan")
    save_npz(tmp_path / "best.npz", net, {"classes": [str(i) for i in range(10)]})
    with pytest.raises(MnistlabError, match="NaN or infinite"):
        load_model(tmp_path)


@pytest.mark.parametrize("kind", list(LIES))
@pytest.mark.parametrize("command", [
    ["eval", "{path}"],
    ["predict", "{path}", "{image}"],
    ["export", "{path}", "--format", "torchscript", "-o", "{tmp}/out.pt"],
    ["featuremaps", "{path}", "--image", "{image}", "-o", "{tmp}/maps.png"],
    ["serve", "{path}", "--port", "0"],
])
def test_every_command_refuses_a_lying_checkpoint(tmp_path, capsys, command, kind):
    from PIL import Image

    path = lying(tmp_path / "lie.pt", kind)
    image = tmp_path / "digit.png"
    Image.new("L", (28, 28), 0).save(image)
    before = sorted(tmp_path.iterdir())
    assert main([a.format(path=path, image=image, tmp=tmp_path) for a in command]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mnistlab: error: ") and err.count("\n") == 1, err
    assert LIES[kind] in err
    assert sorted(tmp_path.iterdir()) == before  # no output file, half-made or not


def test_zoo_models_have_ten_outputs():
    from mnistlab.checkpoint import model_outputs
    from mnistlab.models import MODELS

    assert {name: model_outputs({"name": name}) for name in MODELS} == dict.fromkeys(MODELS, 10)
