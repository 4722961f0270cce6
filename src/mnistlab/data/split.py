"""Which training images are held out for validation: one function for every backend.

NumPy only (no torch), so that the PyTorch pipeline (`data.pipeline.train_val_split`) and the
NumPy network (`scratch.data.split_and_standardise`) hold out exactly the same images for
the same seed, and `mnistlab eval --split val` can rebuild a run's validation split.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def split_indices(n: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices), each sorted, int64: a seeded draw of `val_size`
    of the `n` training images for validation and the rest for training."""
    if not 0 <= val_size < n:
        raise ValueError(f"val_size must be in [0, {n}), got {val_size}")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[val_size:]), np.sort(order[:val_size])


def split_seed_of(config: dict[str, Any]) -> int:
    """The seed of a run's validation split from its config.json (older runs: `seed`)."""
    split_seed = config.get("split_seed")
    return int(config.get("seed", 0) if split_seed is None else split_seed)
