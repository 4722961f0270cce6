"""A multi-layer perceptron: Dense, activation, Dense, activation, ..., Dense.

The network has no loss inside it: `forward` gives logits, and `backward` takes
dL/dlogits from a loss function (losses.py), so the same network serves training,
gradient checks and deliberately wrong losses for teaching.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np

from mnistlab.scratch.init import init_weight
from mnistlab.scratch.layers import ACTIVATIONS, Activation, Dense

DEFAULT_SIZES = (784, 200, 50, 10)


class MLP:
    """sizes=(784, 200, 50, 10) makes 784 -> 200 -> 50 -> 10 with `activation` between the
    dense layers (none after the last one: it gives logits).  `dtype` is float32 for
    training and float64 for gradient checks; inputs are cast to it."""

    def __init__(
        self,
        sizes: tuple[int, ...] | list[int] = DEFAULT_SIZES,
        activation: str = "relu",
        init: str = "he",
        dtype: np.dtype | type = np.float32,
        seed: int = 0,
    ) -> None:
        sizes = tuple(int(n) for n in sizes)
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes must be at least two positive widths, got {sizes}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of "
                             f"{', '.join(ACTIVATIONS)}")
        self.sizes = sizes
        self.activation = activation
        self.init = init
        self.dtype = np.dtype(dtype)
        rng = np.random.default_rng(seed)
        self.dense: list[Dense] = []
        for n_in, n_out in pairwise(sizes):
            W = init_weight(n_in, n_out, init, rng, self.dtype)  # (n_in, n_out)
            b = np.zeros(n_out, dtype=self.dtype)  # (n_out,)
            self.dense.append(Dense(W, b))
        # One activation after every dense layer but the last.
        self.acts: list[Activation] = [ACTIVATIONS[activation]() for _ in self.dense[:-1]]

    # -- the two passes ------------------------------------------------------------------

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x (B, sizes[0]) -> logits (B, sizes[-1])."""
        h = np.asarray(x, dtype=self.dtype)  # (B, 784)
        for dense, act in zip(self.dense[:-1], self.acts, strict=True):
            z = dense.forward(h)  # (B, n_in) -> (B, n_out), pre-activation
            h = act.forward(z)  # (B, n_out)
        return self.dense[-1].forward(h)  # (B, 10) logits

    def backward(self, dlogits: np.ndarray, input_grad: bool = False) -> np.ndarray | None:
        """dL/dlogits (B, sizes[-1]) -> fills every layer's dW, db.

        Returns dL/dx (B, sizes[0]) when `input_grad`, otherwise skips computing it."""
        g = np.asarray(dlogits, dtype=self.dtype)  # (B, 10)
        # (B, 10) -> (B, 50): dL/d(last hidden activation); dL/dx if there is no hidden layer
        g = self.dense[-1].backward(g, need_input_grad=input_grad or len(self.dense) > 1)
        for dense, act in zip(reversed(self.dense[:-1]), reversed(self.acts), strict=True):
            g = act.backward(g)  # (B, n_out): dL/dz, through the activation's slope
            is_first = dense is self.dense[0]
            g = dense.backward(g, need_input_grad=input_grad or not is_first)  # (B, n_in)
        return g

    # -- parameters ----------------------------------------------------------------------

    def param_names(self) -> list[str]:
        """["W0", "b0", "W1", "b1", ...] in the order of params() and grads()."""
        return [f"{kind}{i}" for i in range(len(self.dense)) for kind in ("W", "b")]

    def params(self) -> list[np.ndarray]:
        """The live weight arrays [W0, b0, W1, b1, ...]; updating them in place trains."""
        return [p for d in self.dense for p in (d.W, d.b)]

    def grads(self) -> list[np.ndarray]:
        """The live gradient arrays [dW0, db0, ...], overwritten by every backward."""
        return [g for d in self.dense for g in (d.dW, d.db)]

    def n_params(self) -> int:
        return sum(p.size for p in self.params())

    def config(self) -> dict[str, Any]:
        """What it takes to rebuild the architecture (stored in checkpoints)."""
        return {
            "sizes": list(self.sizes),
            "activation": self.activation,
            "init": self.init,
            "dtype": self.dtype.name,
        }

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Copies of the weights by name: {"W0": (784, 200), "b0": (200,), ...}."""
        return {name: p.copy() for name, p in zip(self.param_names(), self.params(), strict=True)}

    @classmethod
    def from_arrays(
        cls,
        arrays: dict[str, np.ndarray],
        activation: str = "relu",
        init: str = "he",
        dtype: np.dtype | type | None = None,
    ) -> MLP:
        """Rebuild a network from `to_arrays()` output; the sizes come from the shapes."""
        n_dense = 0
        while f"W{n_dense}" in arrays:
            n_dense += 1
        if n_dense == 0:
            raise ValueError("no weight arrays W0, W1, ... found")
        Ws = [np.asarray(arrays[f"W{i}"]) for i in range(n_dense)]
        if any(W.ndim != 2 for W in Ws):
            raise ValueError("weight arrays W0, W1, ... must be 2-D (n_in, n_out)")
        sizes = [Ws[0].shape[0]] + [W.shape[1] for W in Ws]
        net = cls(sizes, activation, init, dtype if dtype is not None else Ws[0].dtype)
        net.load_arrays(arrays)
        return net

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Copy weights into this network, checking every shape."""
        for name, p in zip(self.param_names(), self.params(), strict=True):
            if name not in arrays:
                raise ValueError(f"missing weight array {name}")
            a = np.asarray(arrays[name])
            if a.shape != p.shape:
                raise ValueError(f"{name} has shape {a.shape}, the network needs {p.shape}")
            p[...] = a  # in place, so optimisers holding params() stay valid

    def astype(self, dtype: np.dtype | type) -> MLP:
        """A copy in another precision, e.g. float64 for a gradient check."""
        return MLP.from_arrays(self.to_arrays(), self.activation, self.init, dtype)

    # -- inference -----------------------------------------------------------------------

    def logits(self, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Logits (N, 10) for any number of examples, computed in chunks to bound memory."""
        chunks = [self.forward(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.sizes[-1]), self.dtype)

    def predict(self, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Predicted class (N,) int64."""
        return self.logits(x, batch_size).argmax(axis=1).astype(np.int64)
