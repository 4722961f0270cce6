"""The default NumPy recipe on real MNIST; runs only when $MNISTLAB_DATA holds the IDX files."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mnistlab.scratch import DEFAULT_RECIPE, MLP, evaluate, fit, load_mnist_folder
from mnistlab.scratch.data import MNIST_FILES

DATA = Path(os.environ.get("MNISTLAB_DATA", "/nonexistent"))
pytestmark = pytest.mark.skipif(
    not all((DATA / name).is_file() for name in MNIST_FILES.values()),
    reason="set MNISTLAB_DATA to a folder with the four MNIST .gz files",
)


def test_default_recipe_reaches_98_percent_on_the_test_set(
    record_property: pytest.RecordProperty,
) -> None:
    data = load_mnist_folder(DATA, val_size=5000, seed=0)
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
    assert seconds < 60  # the target on a 2-core CPU; measured ~4-6 s unloaded
