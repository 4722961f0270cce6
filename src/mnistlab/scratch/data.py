"""MNIST (or a sibling data set) as NumPy matrices for the scratch network:
(N, 784) float32 rows and int64 labels.

Holds out a seeded validation set from the training images and standardises every split
with the mean and std of the remaining training pixels; the test set is never looked at
for any choice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from mnistlab.data.idx import read_idx
from mnistlab.data.locate import ensure_files
from mnistlab.data.registry import get_spec
from mnistlab.data.split import split_indices


@dataclass
class Splits:
    x_train: np.ndarray  # (N_train, 784) float32, standardised
    y_train: np.ndarray  # (N_train,) int64
    x_val: np.ndarray  # (val_size, 784)
    y_val: np.ndarray
    x_test: np.ndarray  # (N_test, 784)
    y_test: np.ndarray
    mean: float  # of training pixels scaled to [0, 1]
    std: float


def standardise(images_u8: np.ndarray, mean: float, std: float) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 784) with (pixel / 255 - mean) / std."""
    x = images_u8.reshape(len(images_u8), -1).astype(np.float32)  # (N, 784)
    x *= np.float32(1.0 / (255.0 * std))  # one fused affine map, in place
    x -= np.float32(mean / std)
    return x


def split_and_standardise(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    val_size: int = 5000,
    seed: int = 0,
) -> Splits:
    """uint8 images (N, 28, 28) and labels -> standardised Splits, `val_size` held out."""
    # The draw the PyTorch backend uses too: the same seed holds out the same images.
    train_idx, val_idx = split_indices(len(train_labels), val_size, seed)
    pixels = train_images[train_idx]
    mean = float(pixels.mean(dtype=np.float64) / 255.0)
    std = float(pixels.std(dtype=np.float64) / 255.0)
    labels = np.asarray(train_labels, dtype=np.int64)
    return Splits(
        x_train=standardise(pixels, mean, std),
        y_train=labels[train_idx],
        x_val=standardise(train_images[val_idx], mean, std),
        y_val=labels[val_idx],
        x_test=standardise(test_images, mean, std),
        y_test=np.asarray(test_labels, dtype=np.int64),
        mean=mean,
        std=std,
    )


def load_splits(
    name: str = "mnist",
    data_dir: str | os.PathLike[str] | None = None,
    val_size: int = 5000,
    seed: int = 0,
    download: bool = False,
) -> Splits:
    """Find the data set's four IDX files the way the rest of mnistlab does (`data_dir`,
    then $MNISTLAB_DATA, then the user cache...; MD5-checked), read and split them."""
    files = ensure_files(get_spec(name), data_dir, download_ok=download)
    raw = {key: read_idx(located.path) for key, located in files.items()}
    return split_and_standardise(raw["train_images"], raw["train_labels"], raw["test_images"],
                                 raw["test_labels"], val_size, seed)
