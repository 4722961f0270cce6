"""Shared fixtures: synthetic IDX data sets made on the fly, and the real MNIST when present.

Tests never download and never need committed data. Real-data tests skip when
MNISTLAB_DATA is unset, except in CI (MNISTLAB_REQUIRE_REAL_DATA=1), where they must run.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mnistlab.data.idx import write_idx


def draw_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A small learnable 10-class image set: class k is a bar pattern at a class-specific
    place, jittered and noised, so a model must learn something to separate them."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    images = rng.integers(0, 40, size=(n, 28, 28)).astype(np.int32)
    for i, k in enumerate(labels):
        r, c = 4 + (k // 5) * 12 + rng.integers(-1, 2), 2 + (k % 5) * 5 + rng.integers(-1, 2)
        images[i, r : r + 8, c : c + 3] += 200
    return np.clip(images, 0, 255).astype(np.uint8), labels


def write_dataset(folder: Path, n_train: int = 600, n_test: int = 200, seed: int = 0) -> Path:
    """Write the four IDX files of a synthetic data set (gzipped, canonical names)."""
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = draw_digits(n_train, seed)
    test_x, test_y = draw_digits(n_test, seed + 1)
    write_idx(folder / "train-images-idx3-ubyte.gz", train_x)
    write_idx(folder / "train-labels-idx1-ubyte.gz", train_y)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", test_x)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", test_y)
    return folder


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty user cache; the real-data location is kept."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def synthetic_data(tmp_path):
    """A DigitData built from synthetic IDX files (checksums are not MNIST's, so it is
    loaded through the IDX reader directly rather than through the MD5-checked registry)."""
    import torch

    from mnistlab.data.dataset import DigitData
    from mnistlab.data.registry import MNIST

    folder = write_dataset(tmp_path / "synthetic")
    from mnistlab.data.idx import read_idx
    from mnistlab.data.locate import LocatedFile

    arrays = {k: read_idx(folder / f.name) for k, f in MNIST.files.items()}
    files = {k: LocatedFile(folder / f.name, "synthetic", "test") for k, f in MNIST.files.items()}
    return DigitData(MNIST, torch.from_numpy(arrays["train_images"]),
                     torch.from_numpy(arrays["train_labels"].astype(np.int64)),
                     torch.from_numpy(arrays["test_images"]),
                     torch.from_numpy(arrays["test_labels"].astype(np.int64)), files)


def real_data_dir() -> str | None:
    root = os.environ.get("MNISTLAB_DATA")
    if root and any((Path(root) / sub / "train-images-idx3-ubyte.gz").is_file()
                    for sub in ("", "mnist", "MNIST/raw")):
        return root
    return None


@pytest.fixture(scope="session")
def real_mnist():
    """The real MNIST as DigitData; skipped without it, an error in CI."""
    root = real_data_dir()
    if root is None:
        if os.environ.get("MNISTLAB_REQUIRE_REAL_DATA"):
            pytest.fail("MNISTLAB_REQUIRE_REAL_DATA is set but MNISTLAB_DATA has no MNIST files")
        pytest.skip("real MNIST not available (set MNISTLAB_DATA)")
    from mnistlab.data.dataset import load_dataset

    return load_dataset("mnist", download=False)
