"""NumPy-backend checkpoints (`best.npz`, `last.npz`) as PyTorch `mlp` checkpoints, and back.

The torch side of `mnistlab.scratch`: that package stays NumPy-only, and this module is the
one place that turns its networks into PyTorch models and checkpoint dicts. Every command
that reads a checkpoint goes through `checkpoint.load_checkpoint`, which calls
`npz_to_checkpoint` for a `.npz`, so `eval`, `predict`, `plot`, `compare`, `report`,
`serve` and `export` read a NumPy run as the equivalent PyTorch `mlp`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mnistlab.errors import MnistlabError
from mnistlab.models import create_model
from mnistlab.scratch.checkpoint import load_npz, save_npz
from mnistlab.scratch.convert import from_torch_state_dict, to_state_arrays
from mnistlab.scratch.network import MLP


def to_torch_state_dict(net: MLP) -> dict[str, torch.Tensor]:
    """A state dict for the torch MLP with the same sizes and activation, in net.dtype."""
    return {key: torch.from_numpy(array) for key, array in to_state_arrays(net).items()}


def mlp_spec(net: MLP) -> dict[str, Any]:
    """The `model` entry of a checkpoint: the PyTorch `mlp` with the same sizes."""
    return {"name": "mlp", "kwargs": {"hidden": ",".join(map(str, net.sizes[1:-1])),
                                      "activation": net.activation}}


def npz_to_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A NumPy `.npz` checkpoint as an in-memory PyTorch `mlp` checkpoint dict (float32),
    without the format marker (`checkpoint.load_checkpoint` adds it)."""
    net, extra = load_npz(path)
    return {"model": extra.get("model") or mlp_spec(net),
            "state_dict": to_torch_state_dict(net.astype(np.float32)),
            "normalizer": extra.get("normalizer"), "dataset": extra.get("dataset", "mnist"),
            "classes": extra.get("classes", [str(d) for d in range(10)]),
            # NumPy computed in float32: evaluate the converted model the same way.
            "config": {**extra.get("config", {}), "bf16": "off"}, "bf16": False,
            "epoch": extra.get("epoch", 0), "batch": extra.get("batch", 0),
            "path": str(path)}


def to_torch_model(net: MLP) -> nn.Module:
    """The PyTorch `mlp` holding `net`'s weights, in eval mode."""
    spec = mlp_spec(net)
    model = create_model(spec["name"], **spec["kwargs"])
    model.load_state_dict(to_torch_state_dict(net.astype(np.float32)))
    return model.eval()


def checkpoint_to_npz(state: dict[str, Any], output: str | os.PathLike[str]) -> Path:
    """Write a PyTorch `mlp` checkpoint's weights as a NumPy `.npz` checkpoint."""
    spec = state.get("model", {})
    if spec.get("name") != "mlp":
        raise MnistlabError(f"{state.get('path')}: only an mlp converts to NumPy, "
                            f"this is '{spec.get('name')}'")
    activation = spec.get("kwargs", {}).get("activation", "relu")
    net = from_torch_state_dict(state["state_dict"], activation=activation)
    extra = {k: state[k] for k in ("model", "dataset", "classes", "normalizer", "config", "epoch")
             if k in state}
    save_npz(output, net, extra)
    return Path(output)
