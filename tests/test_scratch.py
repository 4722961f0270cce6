"""The NumPy network: gradients, the loss, the optimiser and training (mnistlab.scratch)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnistlab.scratch import (
    INITS,
    MLP,
    SGD,
    check_gradients,
    evaluate,
    fit,
    log_softmax,
    lr_factor,
    numerical_gradient,
    relative_error,
    softmax,
    softmax_cross_entropy,
    split_and_standardise,
)
from mnistlab.scratch.experiments import softmax_ce_extra_derivative

SRC = Path(__file__).resolve().parents[1] / "src"
ACTS = ("relu", "sigmoid", "tanh")


def small_problem(seed: int = 0, n: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 12)), rng.integers(0, 3, n)


def spirals(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three interleaved 2-D spirals: no straight line separates them, a hidden layer must."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.0, 1.0, (3, n_per_class))  # position along each arm
    arm = np.arange(3)[:, None]
    angle = 4.0 * t + arm * 2 * np.pi / 3 + rng.normal(0, 0.1, t.shape)
    x = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=-1).reshape(-1, 2)
    y = np.repeat(np.arange(3), n_per_class)
    return (x / x.std()).astype(np.float32), y.astype(np.int64)


def test_import_does_not_import_torch() -> None:
    path = os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    code = "import sys, mnistlab.scratch; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


# -- gradients ------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ACTS)
def test_backprop_matches_finite_differences(activation: str) -> None:
    x, y = small_problem()
    net = MLP((12, 7, 5, 3), activation, init="xavier", dtype=np.float64, seed=1)
    errors = check_gradients(net, x, y)
    assert set(errors) == {"W0", "b0", "W1", "b1", "W2", "b2"}
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("activation", ACTS)
def test_input_gradient_matches_finite_differences(activation: str) -> None:
    x, y = small_problem(seed=2)
    net = MLP((12, 7, 5, 3), activation, init="xavier", dtype=np.float64, seed=3)
    dx = net.backward(softmax_cross_entropy(net.forward(x), y)[1], input_grad=True)
    numeric = numerical_gradient(lambda: softmax_cross_entropy(net.forward(x), y)[0], x)
    assert dx is not None and dx.shape == x.shape
    assert relative_error(dx, numeric) < 1e-6


def test_network_without_hidden_layer_has_right_gradients() -> None:
    x, y = small_problem(seed=5)
    net = MLP((12, 3), dtype=np.float64, seed=0)  # softmax regression
    assert max(check_gradients(net, x, y).values()) < 1e-6
    assert net.backward(softmax_cross_entropy(net.forward(x), y)[1]) is None
    dx = net.backward(softmax_cross_entropy(net.forward(x), y)[1], input_grad=True)
    numeric = numerical_gradient(lambda: softmax_cross_entropy(net.forward(x), y)[0], x)
    assert dx is not None and relative_error(dx, numeric) < 1e-6


def test_gradient_check_catches_the_extra_softmax_derivative() -> None:
    x, y = small_problem()
    net = MLP((12, 7, 5, 3), dtype=np.float64, seed=1)
    assert min(check_gradients(net, x, y, softmax_ce_extra_derivative).values()) > 0.1


def test_gradient_check_refuses_float32() -> None:
    x, y = small_problem()
    with pytest.raises(ValueError, match="float64"):
        check_gradients(MLP((12, 7, 5, 3)), x, y)


@pytest.mark.parametrize("activation", ACTS)
def test_loss_and_gradients_match_torch_autograd(activation: str) -> None:
    torch = pytest.importorskip("torch")
    x, y = small_problem(seed=4, n=9)
    net = MLP((12, 7, 5, 3), activation, init="he", dtype=np.float64, seed=5)
    loss, dlogits = softmax_cross_entropy(net.forward(x), y)
    net.backward(dlogits)

    act = {"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh}[activation]
    model = torch.nn.Sequential(
        torch.nn.Linear(12, 7), act(), torch.nn.Linear(7, 5), act(), torch.nn.Linear(5, 3)
    ).double()
    with torch.no_grad():
        for linear, dense in zip(model[::2], net.dense, strict=True):
            linear.weight.copy_(torch.from_numpy(dense.W.T))  # torch stores (out, in)
            linear.bias.copy_(torch.from_numpy(dense.b))
    t_loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
    t_loss.backward()

    assert abs(loss - t_loss.item()) <= 1e-6 * abs(t_loss.item())
    for linear, dense in zip(model[::2], net.dense, strict=True):
        assert relative_error(dense.dW, linear.weight.grad.numpy().T) < 1e-6
        assert relative_error(dense.db, linear.bias.grad.numpy()) < 1e-6


# -- the loss -------------------------------------------------------------------------------


def test_softmax_cross_entropy_gradient_is_probs_minus_onehot_over_batch() -> None:
    rng = np.random.default_rng(0)
    logits, labels = rng.standard_normal((5, 4)), np.array([0, 3, 1, 1, 2])
    loss, grad = softmax_cross_entropy(logits, labels)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)  # the naive formula
    np.testing.assert_allclose(grad, (p - np.eye(4)[labels]) / 5, rtol=1e-12)
    assert loss == pytest.approx(-np.log(p[np.arange(5), labels]).mean(), rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_is_stable_for_huge_logits(dtype: type) -> None:
    logits = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4], [1e4, 1e4, 0.0]], dtype=dtype)
    labels = np.array([0, 2, 2])
    # Any overflow, 0/0 or log(0) fails the test; exp(-2e4) underflowing to 0 is harmless.
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        loss, grad = softmax_cross_entropy(logits, labels)
        probs, log_probs = softmax(logits), log_softmax(logits)
    assert np.isfinite(loss) and np.isfinite(grad).all()
    assert np.isfinite(probs).all() and np.isfinite(log_probs).all()
    # Row 0 is right with certainty (0), row 1 is a 3-way tie (log 3), row 2 is off by 1e4.
    assert loss == pytest.approx((0 + np.log(3) + 1e4 + np.log(2)) / 3, rel=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-6)


# -- the parts ------------------------------------------------------------------------------


@pytest.mark.parametrize("init", INITS)
def test_initialisation_scales(init: str) -> None:
    W = MLP((400, 300, 10), init=init, dtype=np.float64, seed=0).dense[0].W
    expected = {"he": np.sqrt(2 / 400), "xavier": np.sqrt(2 / 700), "small": 0.01, "normal": 1.0}
    assert W.std() == pytest.approx(expected[init], rel=0.02)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="activation"):
        MLP((4, 3), activation="gelu")
    with pytest.raises(ValueError, match="init"):
        MLP((4, 3), init="orthogonal")
    with pytest.raises(ValueError, match="sizes"):
        MLP((4,))
    with pytest.raises(ValueError, match="schedule"):
        lr_factor("linear", 0, 10)


def test_mlp_shapes_dtype_and_parameter_lists() -> None:
    net = MLP((784, 64, 10), seed=0)
    assert net.param_names() == ["W0", "b0", "W1", "b1"]
    assert [p.shape for p in net.params()] == [(784, 64), (64,), (64, 10), (10,)]
    assert [g.shape for g in net.grads()] == [p.shape for p in net.params()]
    assert net.n_params() == 784 * 64 + 64 + 64 * 10 + 10
    logits = net.forward(np.zeros((3, 784), dtype=np.float64))  # inputs are cast
    assert logits.shape == (3, 10) and logits.dtype == np.float32
    assert net.predict(np.zeros((0, 784))).shape == (0,)


def test_sgd_matches_torch_sgd_with_momentum_and_weight_decay() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    params = [rng.standard_normal((4, 3)), rng.standard_normal(3)]
    t_params = [torch.tensor(p, requires_grad=True) for p in params]
    # Our weight decay applies to weight matrices only, so torch gets two parameter groups.
    t_opt = torch.optim.SGD([{"params": t_params[:1], "weight_decay": 0.01},
                             {"params": t_params[1:], "weight_decay": 0.0}], lr=0.1, momentum=0.9)
    opt = SGD(params, lr=0.1, momentum=0.9, weight_decay=0.01)
    for _ in range(3):
        grads = [rng.standard_normal(p.shape) for p in params]
        opt.step(grads)
        for t, g in zip(t_params, grads, strict=True):
            t.grad = torch.tensor(g)
        t_opt.step()
    for p, t in zip(params, t_params, strict=True):
        np.testing.assert_allclose(p, t.detach().numpy(), rtol=1e-12)


def test_learning_rate_schedules() -> None:
    assert lr_factor("constant", 7, 10) == 1.0
    assert lr_factor("cosine", 0, 100) == 1.0
    assert lr_factor("cosine", 50, 100) == pytest.approx(0.5)
    assert lr_factor("cosine", 99, 100) < 0.001
    assert [lr_factor("step", s, 100) for s in (0, 49, 50, 74, 75)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01])
    assert lr_factor(lambda step, total: 0.25, 3, 10) == 0.25


def test_split_and_standardise() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (100, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 100)
    s = split_and_standardise(images, labels, images[:7], labels[:7], val_size=20, seed=1)
    assert s.x_train.shape == (80, 784) and s.x_val.shape == (20, 784)
    assert s.x_test.shape == (7, 784) and s.x_train.dtype == np.float32
    assert s.y_train.dtype == np.int64
    assert abs(s.x_train.mean()) < 1e-5 and s.x_train.std() == pytest.approx(1, rel=1e-4)
    # Train and validation are disjoint and together are the whole set.
    rows = {r.tobytes() for r in np.concatenate([s.x_train, s.x_val])}
    assert len(rows) == 100


# -- training -------------------------------------------------------------------------------


def test_training_learns_spirals() -> None:
    x_train, y_train = spirals(300, seed=0)
    x_test, y_test = spirals(200, seed=1)
    # A linear model (no hidden layer) cannot separate the arms...
    linear = MLP((2, 3), seed=0)
    fit(linear, x_train, y_train, epochs=30, batch_size=32, lr=0.1, weight_decay=0.0)
    assert evaluate(linear, x_test, y_test)[1] < 0.7
    # ...a two-hidden-layer ReLU network can.
    net = MLP((2, 64, 64, 3), seed=0)
    history = fit(net, x_train, y_train, x_test, y_test, epochs=60, batch_size=32, lr=0.1,
                  weight_decay=0.0, seed=0)
    assert evaluate(net, x_test, y_test)[1] >= 0.95
    assert history[-1]["train_loss"] < history[0]["train_loss"] / 4


def test_fit_reports_every_epoch_to_the_callback() -> None:
    x, y = spirals(50, seed=0)
    seen: list[dict] = []
    history = fit(MLP((2, 8, 3)), x, y, x, y, epochs=3, batch_size=16, on_epoch=seen.append)
    assert seen == history and [r["epoch"] for r in seen] == [1, 2, 3]
    keys = {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds",
            "images_per_s"}
    assert keys <= set(seen[0])
    assert seen[0]["lr"] == 0.05 and seen[2]["lr"] < seen[1]["lr"] < 0.05  # cosine
    assert all(0 <= r["val_acc"] <= 1 and r["images_per_s"] > 0 for r in seen)
    assert fit(MLP((2, 8, 3)), x, y, epochs=1)[0]["val_acc"] is None


def test_fit_refuses_data_of_the_wrong_shape() -> None:
    x, y = spirals(10, seed=0)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        fit(MLP((2, 3)), x.reshape(-1, 1, 2), y)
    with pytest.raises(ValueError, match="rows"):
        fit(MLP((2, 3)), x, y[:-1])


def test_fit_stops_when_the_loss_diverges() -> None:
    x, y = spirals(50, seed=0)
    with np.errstate(all="ignore"):
        history = fit(MLP((2, 64, 64, 3), init="normal"), x * 1e3, y, epochs=5, lr=1e3)
    assert len(history) < 5 and not np.isfinite(history[-1]["train_loss"])


def test_per_sample_mode_equals_batch_size_one() -> None:
    x, y = spirals(40, seed=3)
    a, b = MLP((2, 16, 3), seed=7), MLP((2, 16, 3), seed=7)
    hist_a = fit(a, x, y, x, y, epochs=2, batch_size=1, lr=0.02, seed=11)
    hist_b = fit(b, x, y, x, y, epochs=2, per_sample=True, lr=0.02, seed=11)
    for p, q in zip(a.params(), b.params(), strict=True):
        np.testing.assert_array_equal(p, q)
    assert [h["train_loss"] for h in hist_a] == [h["train_loss"] for h in hist_b]
    assert [h["val_acc"] for h in hist_a] == [h["val_acc"] for h in hist_b]


def test_training_is_reproducible_from_seeds() -> None:
    x, y = spirals(40, seed=0)
    nets = [MLP((2, 16, 3), seed=1) for _ in range(2)]
    for net in nets:
        fit(net, x, y, epochs=2, batch_size=8, seed=5)
    np.testing.assert_array_equal(nets[0].dense[0].W, nets[1].dense[0].W)


# -- the experiments script -----------------------------------------------------------------


def test_experiments_run_on_a_tiny_data_set() -> None:
    from mnistlab.scratch import experiments

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 240)
    images = rng.integers(0, 60, (240, 28, 28), dtype=np.uint8)
    images[np.arange(240), labels * 2, :] = 255  # a learnable pattern: row 2k lit for class k
    data = split_and_standardise(images[:200], labels[:200], images[200:], labels[200:],
                                 val_size=40)
    softmax_table = experiments.run_softmax(data, epochs=1)
    assert "| extra p*(1-p) |" in softmax_table and "| correct |" in softmax_table
    batch_table = experiments.run_batch(data, per_sample_epochs=1)
    assert "| 160 |" in batch_table  # one example per update: 160 updates in one epoch
    init_table = experiments.run_init(data, epochs=1)
    assert init_table.count("\n") == 1 + 2 * len(INITS)


def test_experiments_main_without_data_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mnistlab.scratch import experiments

    monkeypatch.delenv("MNISTLAB_DATA", raising=False)
    assert experiments.main(["--data", str(tmp_path), "--only", "recipe"]) == 2
    assert capsys.readouterr().err.startswith("mnistlab: error: ")
