"""Saving, loading and converting the NumPy network (.npz checkpoints, torch state dicts)."""

from __future__ import annotations

import zipfile
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from mnistlab.errors import MnistlabError
from mnistlab.scratch import (
    MLP,
    CheckpointError,
    fit,
    from_torch_state_dict,
    load_npz,
    save_npz,
    torch_key,
)


def trained_net(sizes: tuple[int, ...] = (784, 32, 16, 10), activation: str = "tanh") -> MLP:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], 64)
    net = MLP(sizes, activation, init="xavier", seed=3)
    fit(net, x, y, epochs=2, batch_size=16)
    return net


def inputs(n: int = 50, width: int = 784) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((n, width)).astype(np.float32)


# -- .npz checkpoints -----------------------------------------------------------------------


def test_npz_round_trip_gives_identical_predictions(tmp_path: Path) -> None:
    net = trained_net()
    path = tmp_path / "run" / "model.npz"
    extra = {"epochs": 2, "test_acc": np.float64(0.5), "mean": 0.13, "note": "hi"}
    save_npz(path, net, extra)
    loaded, loaded_extra = load_npz(path)
    assert loaded.config() == net.config() == {
        "sizes": [784, 32, 16, 10], "activation": "tanh", "init": "xavier", "dtype": "float32"}
    assert loaded_extra == {"epochs": 2, "test_acc": 0.5, "mean": 0.13, "note": "hi"}
    np.testing.assert_array_equal(loaded.logits(inputs()), net.logits(inputs()))
    np.testing.assert_array_equal(loaded.predict(inputs()), net.predict(inputs()))
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.npz"]  # no temp file left


def test_npz_is_plain_numpy_with_the_architecture_inside(tmp_path: Path) -> None:
    save_npz(tmp_path / "m.npz", MLP((6, 4, 2), "sigmoid"))
    with np.load(tmp_path / "m.npz", allow_pickle=False) as data:
        assert str(data["format"]) == "mnistlab-numpy-mlp"
        assert '"sizes": [6, 4, 2]' in str(data["config"])
        assert data["W0"].shape == (6, 4) and data["b1"].shape == (2,)


def test_save_npz_keeps_the_name_it_is_given(tmp_path: Path) -> None:
    save_npz(tmp_path / "weights.bin", MLP((3, 2)))
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]
    assert load_npz(tmp_path / "weights.bin")[0].sizes == (3, 2)


def test_save_npz_replaces_an_old_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    save_npz(path, MLP((3, 2), seed=0))
    save_npz(path, MLP((5, 4, 2), seed=1))
    assert load_npz(path)[0].sizes == (5, 4, 2)


def _npz_without_format(path: Path) -> None:
    np.savez(path, W0=np.zeros((3, 2)), b0=np.zeros(2))


def _npz_with_bad_shapes(path: Path) -> None:
    save_npz(path, MLP((3, 4, 2)))
    with np.load(path) as data:
        arrays = dict(data)
    arrays["W1"] = np.zeros((5, 2), dtype=np.float32)
    np.savez(path, **arrays)


def _npz_from_the_future(path: Path) -> None:
    save_npz(path, MLP((3, 2)))
    with np.load(path) as data:
        arrays = dict(data)
    np.savez(path, **{**arrays, "version": np.array(99)})


def _truncated_npz(path: Path) -> None:
    save_npz(path, MLP((30, 20, 10)))
    path.write_bytes(path.read_bytes()[:300])


def _zip_of_other_files(path: Path) -> None:  # what a torch .pt file looks like from outside
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")


CORRUPT = {
    "random bytes": lambda p: p.write_bytes(np.random.default_rng(0).bytes(1000)),
    "empty": lambda p: p.write_bytes(b""),
    "text": lambda p: p.write_text("W0,b0\n1,2\n"),
    "a .npy array": lambda p: np.save(open(p, "wb"), np.zeros(3)),  # noqa: SIM115
    "another program's .npz": _npz_without_format,
    "wrong shapes": _npz_with_bad_shapes,
    "newer version": _npz_from_the_future,
    "truncated": _truncated_npz,
    "zip of other files": _zip_of_other_files,
}


@pytest.mark.parametrize("kind", CORRUPT)
def test_load_npz_gives_a_one_line_error_naming_the_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "model.npz"
    CORRUPT[kind](path)
    with pytest.raises(CheckpointError) as info:
        load_npz(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    assert "not a mnistlab NumPy checkpoint" in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, MnistlabError)


def test_load_npz_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nope\.npz: no such file"):
        load_npz(tmp_path / "nope.npz")


def test_load_npz_of_a_float64_network_keeps_the_dtype(tmp_path: Path) -> None:
    save_npz(tmp_path / "m.npz", MLP((4, 3), dtype=np.float64))
    assert load_npz(tmp_path / "m.npz")[0].dtype == np.float64


# -- torch state dicts ----------------------------------------------------------------------


def torch_mlp(sizes: tuple[int, ...], activation: str):  # type: ignore[no-untyped-def]
    """The layout the converter targets: `layers` = Sequential(Linear, act, ..., Linear)."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    act = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[activation]

    class TorchMLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            mods: list[nn.Module] = []
            for i, (n_in, n_out) in enumerate(pairwise(sizes)):
                mods.append(nn.Linear(n_in, n_out))
                if i < len(sizes) - 2:
                    mods.append(act())
            self.layers = nn.Sequential(*mods)

        def forward(self, x):  # type: ignore[no-untyped-def]
            return self.layers(x.flatten(1))

    return TorchMLP()


def test_torch_key_layout() -> None:
    assert [torch_key(i, "weight") for i in range(3)] == [
        "layers.0.weight", "layers.2.weight", "layers.4.weight"]
    assert torch_key(1, "bias") == "layers.2.bias"


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_torch_round_trip_gives_identical_logits(activation: str) -> None:
    torch = pytest.importorskip("torch")
    from mnistlab.checkpoint_npz import to_torch_state_dict

    net = trained_net((784, 32, 16, 10), activation)
    sd = to_torch_state_dict(net)
    assert list(sd) == ["layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias",
                        "layers.4.weight", "layers.4.bias"]
    assert tuple(sd["layers.0.weight"].shape) == (32, 784)  # torch is (out, in)
    model = torch_mlp(net.sizes, activation)
    model.load_state_dict(sd, strict=True)
    x = inputs()
    with torch.no_grad():
        t_logits = model(torch.from_numpy(x).reshape(-1, 1, 28, 28)).numpy()
    np.testing.assert_allclose(t_logits, net.logits(x), rtol=1e-5, atol=1e-5)

    back = from_torch_state_dict(model.state_dict(), activation)
    np.testing.assert_array_equal(back.logits(x), net.logits(x))
    assert back.sizes == net.sizes


def test_from_torch_state_dict_of_the_project_mlp() -> None:
    torch = pytest.importorskip("torch")
    mlp = pytest.importorskip("mnistlab.models.mlp")
    from mnistlab.checkpoint_npz import to_torch_state_dict

    model = mlp.MLP(hidden="20,12", activation="relu")
    net = from_torch_state_dict(model.state_dict(), "relu")
    assert net.sizes == (784, 20, 12, 10)
    x = inputs(8)
    with torch.no_grad():
        expected = model(torch.from_numpy(x).reshape(-1, 1, 28, 28)).numpy()
    np.testing.assert_allclose(net.logits(x), expected, rtol=1e-5, atol=1e-5)
    model.load_state_dict(to_torch_state_dict(net), strict=True)


def test_from_torch_state_dict_accepts_numpy_values_and_rejects_other_layouts() -> None:
    W, b = np.ones((3, 5), dtype=np.float32), np.zeros(3, dtype=np.float32)
    net = from_torch_state_dict({"layers.0.weight": W, "layers.0.bias": b})
    assert net.sizes == (5, 3)
    with pytest.raises(ValueError, match="unexpected keys"):
        from_torch_state_dict({"conv1.weight": W, "layers.0.bias": b})
    with pytest.raises(ValueError, match="missing"):
        from_torch_state_dict({"layers.1.weight": W, "layers.1.bias": b})
