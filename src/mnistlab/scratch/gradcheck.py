"""Checking backpropagation against central finite differences.

For every weight w:  dL/dw ~ (L(w + eps) - L(w - eps)) / (2 eps), with error O(eps**2).
Run it in float64: in float32 the rounding error of L, about 1e-7 * L / eps, swamps the
difference for any eps small enough to be accurate.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mnistlab.scratch.losses import LossFn, softmax_cross_entropy
from mnistlab.scratch.network import MLP


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / (||a|| + ||b||): 0 when equal, 1 when unrelated, scale-free."""
    denom = float(np.linalg.norm(a) + np.linalg.norm(b))
    return float(np.linalg.norm(a - b)) / denom if denom > 0 else 0.0


def numerical_gradient(f: Callable[[], float], param: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """dF/dparam by central differences, nudging `param` in place one entry at a time."""
    grad = np.zeros_like(param)
    flat, gflat = param.reshape(-1), grad.reshape(-1)  # views, so nudges reach `param`
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        f_plus = f()
        flat[i] = old - eps
        f_minus = f()
        flat[i] = old  # restore exactly
        gflat[i] = (f_plus - f_minus) / (2 * eps)
    return grad


def check_gradients(
    net: MLP,
    x: np.ndarray,
    y: np.ndarray,
    loss_fn: LossFn = softmax_cross_entropy,
    eps: float = 1e-6,
) -> dict[str, float]:
    """Relative error between backprop and finite differences, per parameter ("W0", "b0", ...).

    The finite differences use only the loss *value* of `loss_fn`, and backprop only its
    gradient, so a wrong gradient formula shows up as a large error.  Values below ~1e-7
    mean the backward pass is right; use a float64 network (`net.astype(np.float64)`).
    """
    if net.dtype != np.float64:
        raise ValueError(f"gradient checks need a float64 network, got {net.dtype}")
    _, dlogits = loss_fn(net.forward(x), y)
    net.backward(dlogits)
    analytic = [g.copy() for g in net.grads()]

    def loss_value() -> float:
        return loss_fn(net.forward(x), y)[0]

    return {
        name: relative_error(a, numerical_gradient(loss_value, p, eps))
        for name, p, a in zip(net.param_names(), net.params(), analytic, strict=True)
    }
