"""`mnistlab train --backend numpy` and the bridge between NumPy and PyTorch checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import load_synthetic, write_dataset
from mnistlab.checkpoint import load_model
from mnistlab.cli import main
from mnistlab.errors import MnistlabError
from mnistlab.scratch import load_npz
from mnistlab.train import resolve_config, train


@pytest.fixture(scope="module")
def numpy_run(tmp_path_factory, request):
    synthetic = request.getfixturevalue("synthetic_data")
    runs = tmp_path_factory.mktemp("runs")
    config = resolve_config(backend="numpy", epochs=3, val_size=100, runs_dir=str(runs),
                            name="np", model_args={"hidden": "32"})
    return train(config, data=synthetic)


@pytest.fixture(scope="module")
def synthetic_data(tmp_path_factory):
    return load_synthetic(write_dataset(tmp_path_factory.mktemp("syn")))


def test_numpy_backend_learns_and_writes_a_run_directory(numpy_run):
    run = numpy_run.run_dir
    for name in ("config.json", "metrics.csv", "summary.json", "best.npz", "last.npz"):
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["backend"] == "numpy"
    assert summary["test_accuracy"] > 0.9  # chance is 0.1
    net, extra = load_npz(run / "best.npz")
    assert list(net.sizes) == [784, 32, 10]
    assert extra["normalizer"]["std"] > 0


def test_npz_loads_as_the_equivalent_torch_mlp(numpy_run, synthetic_data):
    model, normalizer, state = load_model(numpy_run.run_dir)
    assert state["model"] == {"name": "mlp", "kwargs": {"hidden": "32", "activation": "relu"}}
    net, _ = load_npz(numpy_run.run_dir / "best.npz")
    x = normalizer(synthetic_data.test_images[:50])
    expected = net.logits(x.reshape(50, -1).numpy())
    with torch.no_grad():
        got = model(x).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_eval_of_a_numpy_run_reproduces_its_summary(numpy_run, synthetic_data, tmp_path):
    from mnistlab.data.pipeline import Split
    from mnistlab.evaluate import evaluate

    model, normalizer, _ = load_model(numpy_run.run_dir)
    result = evaluate(model, Split(synthetic_data.test_images, synthetic_data.test_labels),
                      normalizer)
    assert result.correct == numpy_run.summary["test"]["correct"]


def test_convert_round_trip_gives_the_same_predictions(numpy_run, tmp_path, capsys):
    pt, npz = tmp_path / "model.pt", tmp_path / "back.npz"
    assert main(["convert", str(numpy_run.run_dir), "-o", str(pt)]) == 0
    assert main(["convert", str(pt), "-o", str(npz)]) == 0
    original, _ = load_npz(numpy_run.run_dir / "best.npz")
    back, _ = load_npz(npz)
    x = np.random.default_rng(0).standard_normal((20, 784)).astype(np.float32)
    np.testing.assert_allclose(back.logits(x), original.logits(x), rtol=1e-6, atol=1e-6)
    state = torch.load(pt, weights_only=True)
    assert state["model"]["name"] == "mlp"


def test_convert_refuses_non_mlp_and_bad_suffix(tmp_path, capsys, synthetic_data):
    run = train(resolve_config(model="lenet5", epochs=1, val_size=100, runs_dir=str(tmp_path),
                               name="cnn", bf16="off"), data=synthetic_data).run_dir
    assert main(["convert", str(run), "-o", str(tmp_path / "x.npz")]) == 2
    assert "only an mlp converts" in capsys.readouterr().err
    assert main(["convert", str(run), "-o", str(tmp_path / "x.onnx")]) == 2


@pytest.mark.parametrize("option", [{"optimizer": "adam"}, {"schedule": "onecycle"},
                                    {"augment": True}, {"model": "lenet5"}, {"patience": 2},
                                    {"model_args": {"hidden": "32", "width": 3}}])
def test_numpy_backend_rejects_what_it_cannot_do(option, tmp_path, synthetic_data):
    config = resolve_config(backend="numpy", epochs=1, runs_dir=str(tmp_path), **option)
    with pytest.raises(MnistlabError):
        train(config, data=synthetic_data)
    assert not list(tmp_path.iterdir())  # refused before a run directory was made


def test_numpy_runs_cannot_be_resumed(numpy_run):
    with pytest.raises(MnistlabError, match="cannot be resumed"):
        train(resolve_config(), resume=numpy_run.run_dir)


def test_numpy_recipe_is_the_documented_one():
    config = resolve_config(backend="numpy")
    assert (config.model, config.model_args, config.epochs, config.schedule) == (
        "mlp", {"hidden": "200,50"}, 12, "cosine")


def test_other_commands_read_a_numpy_run(numpy_run, tmp_path, capsys):
    run = str(numpy_run.run_dir)
    assert main(["plot", run, "-o", str(tmp_path / "curves.png")]) == 0
    assert main(["compare", run, "--json"]) == 0
    assert main(["report", run]) == 0
    assert (numpy_run.run_dir / "report.html").stat().st_size > 10_000
    assert (tmp_path / "curves.png").stat().st_size > 1_000
