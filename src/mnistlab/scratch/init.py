"""Weight initialisation: how large the random starting weights are.

Each scheme draws W ~ N(0, std**2); biases start at zero.  The std decides whether the
signal keeps its size as it passes through the layers:

- "he"      std = sqrt(2 / n_in): keeps the variance through ReLU layers (He et al., 2015).
- "xavier"  std = sqrt(2 / (n_in + n_out)): keeps it through tanh / sigmoid (Glorot, 2010).
- "small"   std = 0.01, the classic tutorial default: the signal shrinks ~10x per layer,
            so deeper layers start almost silent and learn slowly.
- "normal"  std = 1, unscaled: with 784 inputs each unit starts ~28x larger than its inputs,
            saturating sigmoid / tanh and giving huge logits with ReLU.
"""

from __future__ import annotations

import math

import numpy as np

INITS = ("he", "xavier", "small", "normal")


def _std(scheme: str, n_in: int, n_out: int) -> float:
    if scheme == "he":
        return math.sqrt(2.0 / n_in)
    if scheme == "xavier":
        return math.sqrt(2.0 / (n_in + n_out))
    if scheme == "small":
        return 0.01
    if scheme == "normal":
        return 1.0
    raise ValueError(f"unknown init {scheme!r}; choose one of {', '.join(INITS)}")



def init_weight(
    n_in: int, n_out: int, scheme: str, rng: np.random.Generator, dtype: np.dtype
) -> np.ndarray:
    """A (n_in, n_out) weight matrix drawn with `scheme`'s standard deviation."""
    std = _std(scheme, n_in, n_out)
    # Drawn in float64 and then cast, so a float32 and a float64 network with the same seed
    # start from the same weights (up to rounding).
    return (rng.standard_normal((n_in, n_out)) * std).astype(dtype)
