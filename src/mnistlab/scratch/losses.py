"""Softmax and cross-entropy, fused into one numerically stable function.

For logits z (B, C) and labels y (B,):
    probs[b, c] = exp(z[b, c]) / sum_k exp(z[b, k])
    L           = -mean_b log probs[b, y[b]]
    dL/dz       = (probs - onehot(y)) / B

The gradient is that simple because the log cancels the softmax's exponential: the full
softmax Jacobian (diag(p) - p p^T) times dL/dp = -onehot/p collapses to p - onehot.
Multiplying it again by the "softmax derivative" p * (1 - p) is a classic mistake
(docs/scratch.md measures how wrong it is).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# (logits (B, C), labels (B,)) -> (mean loss, dL/dlogits (B, C)); `fit` accepts any such function.
LossFn = Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log probs (B, C), stable for any finite logits."""
    # Subtracting the row maximum changes nothing mathematically, but makes the largest
    # exponent exp(0) = 1: nothing overflows, and the sum inside the log is at least 1.
    z = logits - logits.max(axis=1, keepdims=True)  # (B, C), every entry <= 0
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))  # (B, C) - (B, 1)


def softmax(logits: np.ndarray) -> np.ndarray:
    """probs (B, C), each row summing to 1."""
    z = logits - logits.max(axis=1, keepdims=True)  # (B, C)
    e = np.exp(z)  # (B, C), in (0, 1]
    return e / e.sum(axis=1, keepdims=True)  # (B, C)


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(logits) against integer labels, and dL/dlogits."""
    B = logits.shape[0]
    rows = np.arange(B)
    z = logits - logits.max(axis=1, keepdims=True)  # (B, C)
    e = np.exp(z)  # (B, C)
    sum_e = e.sum(axis=1, keepdims=True)  # (B, 1), >= 1
    # log p[b, y[b]] = z[b, y[b]] - log sum_k exp(z[b, k]); never log(0), even for 1e4 logits
    log_p_true = z[rows, labels] - np.log(sum_e[:, 0])  # (B,)
    loss = float(-log_p_true.mean())
    grad = e / sum_e  # (B, C) = probs
    grad[rows, labels] -= 1  # probs - onehot
    grad /= B  # the mean over the batch
    return loss, grad
