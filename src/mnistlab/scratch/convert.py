"""Moving weights between this NumPy MLP and PyTorch's `mnistlab.models.mlp.MLP`.

The torch model is `self.layers = nn.Sequential(Linear, act, Linear, act, ..., Linear)`
applied to `x.flatten(1)`: dense layer i is module 2*i of the Sequential, so

    NumPy "W{i}" (n_in, n_out)   <->   torch "layers.{2i}.weight" (n_out, n_in), transposed
    NumPy "b{i}" (n_out,)        <->   torch "layers.{2i}.bias"   (n_out,)

`torch_key` is the only place that knows this. This module never imports torch: it hands
over NumPy arrays (`to_state_arrays`), and `mnistlab.checkpoint_npz` turns them into tensors.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from mnistlab.scratch.network import MLP

_TORCH_KEY = re.compile(r"^layers\.(\d+)\.(weight|bias)$")


def torch_key(dense_index: int, kind: str) -> str:
    """The torch state-dict key of dense layer `dense_index`'s "weight" or "bias"."""
    return f"layers.{2 * dense_index}.{kind}"


def to_state_arrays(net: MLP) -> dict[str, np.ndarray]:
    """The torch MLP's state dict as NumPy arrays (copies, in net.dtype), keyed and shaped as
    torch wants them; `mnistlab.checkpoint_npz.to_torch_state_dict` makes them tensors."""
    arrays: dict[str, np.ndarray] = {}
    for i, dense in enumerate(net.dense):
        arrays[torch_key(i, "weight")] = np.ascontiguousarray(dense.W.T)  # (out, in)
        arrays[torch_key(i, "bias")] = dense.b.copy()  # (out,)
    return arrays


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, possibly on a GPU
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def from_torch_state_dict(
    sd: dict[str, Any],
    activation: str = "relu",
    init: str = "he",
    dtype: np.dtype | type = np.float32,
) -> MLP:
    """Build the NumPy MLP holding a torch MLP's weights.

    The state dict does not say which activation the torch model used: pass the same one.
    Raises ValueError for keys that are not `layers.<even>.weight|bias` of consecutive layers.
    """
    unexpected = [k for k in sd if not _TORCH_KEY.match(k)]
    if unexpected:
        raise ValueError(f"not an mnistlab MLP state dict: unexpected keys {unexpected[:5]}")
    n_dense = len(sd) // 2
    arrays: dict[str, np.ndarray] = {}
    for i in range(n_dense):
        w_key, b_key = torch_key(i, "weight"), torch_key(i, "bias")
        if w_key not in sd or b_key not in sd:
            raise ValueError(f"not an mnistlab MLP state dict: {w_key} / {b_key} missing, "
                             f"keys are {sorted(sd)}")
        arrays[f"W{i}"] = _to_numpy(sd[w_key]).T  # (out, in) -> (in, out)
        arrays[f"b{i}"] = _to_numpy(sd[b_key])
    if len(arrays) != len(sd):
        raise ValueError(f"not an mnistlab MLP state dict: keys are {sorted(sd)}")
    return MLP.from_arrays(arrays, activation, init, dtype)
