"""The building blocks of the NumPy network: a dense (affine) layer and three activations.

Every layer has `forward(x)`, which remembers what `backward` will need, and
`backward(grad_out)`, which takes dL/d(output) and returns dL/d(input).

Shapes in the comments: B = examples in the batch, n_in / n_out = the layer's widths.
One row of a matrix is one example, so a whole batch goes through in one matrix product.
"""

from __future__ import annotations

import numpy as np


class Dense:
    """y = x @ W + b.  W is stored (n_in, n_out) so that the forward pass needs no transpose;
    PyTorch's `nn.Linear.weight` is the transpose, (n_out, n_in) (see `convert.py`)."""

    def __init__(self, W: np.ndarray, b: np.ndarray) -> None:
        if W.ndim != 2 or b.shape != (W.shape[1],):
            raise ValueError(f"Dense: W {W.shape} and b {b.shape} do not fit together")
        self.W = W  # (n_in, n_out)
        self.b = b  # (n_out,)
        # Gradients live in fixed arrays, overwritten by every backward, so an optimiser can
        # hold on to them (see MLP.grads()).
        self.dW = np.zeros_like(W)  # (n_in, n_out)
        self.db = np.zeros_like(b)  # (n_out,)
        self._x: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x  # (B, n_in), kept for dW
        return x @ self.W + self.b  # (B, n_in) @ (n_in, n_out) + (n_out,) -> (B, n_out)

    def backward(self, grad_out: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """grad_out: (B, n_out) = dL/dy.  Fills dW and db; returns dL/dx (B, n_in) or None.

        The first layer's dL/dx (the gradient with respect to the pixels) is never used in
        training, so the network skips it: half of the first layer's backward cost.
        """
        if self._x is None:
            raise RuntimeError("Dense.backward called before forward")
        # dL/dW[i, j] = sum over the batch of x[b, i] * grad_out[b, j]
        np.matmul(self._x.T, grad_out, out=self.dW)  # (n_in, B) @ (B, n_out) -> (n_in, n_out)
        np.sum(grad_out, axis=0, out=self.db)  # (B, n_out) -> (n_out,)
        if not need_input_grad:
            return None
        return grad_out @ self.W.T  # (B, n_out) @ (n_out, n_in) -> (B, n_in)


class ReLU:
    """a = max(z, 0); da/dz = 1 where z > 0, else 0."""

    def __init__(self) -> None:
        self._active: np.ndarray | None = None

    def forward(self, z: np.ndarray) -> np.ndarray:
        self._active = z > 0  # (B, n) booleans
        return np.maximum(z, 0)  # (B, n)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        if self._active is None:
            raise RuntimeError("ReLU.backward called before forward")
        return grad_out * self._active  # (B, n)


class Sigmoid:
    """a = 1 / (1 + exp(-z)); da/dz = a * (1 - a)."""

    def __init__(self) -> None:
        self._a: np.ndarray | None = None

    def forward(self, z: np.ndarray) -> np.ndarray:
        # exp(-|z|) is at most 1, so neither branch overflows for large |z|.
        e = np.exp(-np.abs(z))  # (B, n)
        a = np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype, copy=False)
        self._a = a
        return a

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        if self._a is None:
            raise RuntimeError("Sigmoid.backward called before forward")
        return grad_out * self._a * (1 - self._a)  # (B, n)


class Tanh:
    """a = tanh(z); da/dz = 1 - a**2."""

    def __init__(self) -> None:
        self._a: np.ndarray | None = None

    def forward(self, z: np.ndarray) -> np.ndarray:
        self._a = np.tanh(z)  # (B, n)
        return self._a

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        if self._a is None:
            raise RuntimeError("Tanh.backward called before forward")
        return grad_out * (1 - self._a * self._a)  # (B, n)


Activation = ReLU | Sigmoid | Tanh

ACTIVATIONS: dict[str, type[ReLU] | type[Sigmoid] | type[Tanh]] = {
    "relu": ReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
}
