"""The default NumPy recipe on real MNIST (the `real_mnist` fixture: skipped without
$MNISTLAB_DATA, required in CI)."""

from __future__ import annotations

import time

import pytest

from mnistlab.scratch import DEFAULT_RECIPE, MLP, evaluate, fit, split_and_standardise


@pytest.mark.slow  # ~4 s on an idle 2-core machine, ~40 s on a busy one
@pytest.mark.real_data
def test_default_recipe_reaches_98_percent_on_the_test_set(
    real_mnist, record_property: pytest.RecordProperty
) -> None:
    data = split_and_standardise(
        real_mnist.train_images.numpy(), real_mnist.train_labels.numpy(),
        real_mnist.test_images.numpy(), real_mnist.test_labels.numpy(), val_size=5000, seed=0)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (55000, 5000, 10000)
    net = MLP(**DEFAULT_RECIPE["arch"], seed=0)
    start = time.perf_counter()
    history = fit(net, data.x_train, data.y_train, data.x_val, data.y_val, seed=0,
                  **DEFAULT_RECIPE["train"])
    seconds = time.perf_counter() - start
    _, test_acc = evaluate(net, data.x_test, data.y_test)  # touched once, at the end
    record_property("numpy_mlp_test_acc", test_acc)
    record_property("numpy_mlp_train_seconds", round(seconds, 1))
    print(f"\nNumPy MLP {net.sizes}: val {history[-1]['val_acc']:.4f}, "
          f"test {test_acc:.4f}, {seconds:.1f} s")
    assert history[-1]["val_acc"] >= 0.975
    assert test_acc >= 0.98
    # The target is 60 s on a 2-core CPU; measured ~4 s idle, up to ~50 s on a machine busy
    # with other work (OpenBLAS threads wait on each other): the bound is left generous.
    assert seconds < 120
