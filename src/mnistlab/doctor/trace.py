"""Watch one forward and backward pass of any model, layer by layer, without reading its code.

A `TorchFunctionMode` sees every torch call the forward makes, whether it comes from an
`nn.Linear`, from `F.conv2d`, or from `x @ self.W` on a raw parameter. Every call that
multiplies by a weight parameter (2-D or more) is a "layer": we record the statistics of its
input (what the previous activation produced: dead ReLU units, saturated tanh/sigmoid) and of
its output (the pre-activation scale), its fan-in, and after backward its gradient norm.
Statistics are taken at call time, because in-place activations overwrite the tensors later.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

# Calls that multiply an input by a weight; for each, where the weight is and which input
# dimension it contracts (so fan-in and "units" are known even for raw parameters).
_LINEAR_LIKE = {"linear", "bilinear"}
_CONV_LIKE = {"conv1d", "conv2d", "conv3d"}
_MATMUL_LIKE = {"matmul", "__matmul__", "__rmatmul__", "mm", "addmm", "bmm"}


@dataclass
class LayerTrace:
    layer: str  # "features.0 (Conv2d)" or "W1 (matmul)"
    param: str  # dotted name of the weight parameter
    fan_in: int
    in_std: float
    out_std: float
    zero_fraction: float  # of the input's elements that are exactly 0 (ReLU's signature)
    dead_fraction: float  # of the input's units that are 0 for every image in the batch
    saturated_fraction: float  # of a bounded (tanh/sigmoid-like) input that sits at a bound
    bounded: str | None  # "tanh-like" | "sigmoid-like" | None
    grad_norm: float | None = None
    weight_norm: float = 0.0
    weight: nn.Parameter | None = field(default=None, repr=False)

    @property
    def grad_to_weight(self) -> float | None:
        if self.grad_norm is None or self.weight_norm < 1e-12:
            return None  # e.g. a zero-initialised last layer: no scale to compare against
        return self.grad_norm / max(self.weight_norm, 1e-12)

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "param": self.param, "fan_in": self.fan_in,
                "in_std": self.in_std, "out_std": self.out_std,
                "zero_fraction": self.zero_fraction, "dead_fraction": self.dead_fraction,
                "saturated_fraction": self.saturated_fraction, "bounded": self.bounded,
                "grad_norm": self.grad_norm, "grad_to_weight": self.grad_to_weight}


def _input_stats(x: torch.Tensor, unit_dim: int) -> dict[str, Any]:
    x = x.detach().float()
    zero = float((x == 0).float().mean())
    # A unit is dead when it is 0 for every image and position of the batch.
    alive = (x != 0).movedim(unit_dim, 0).reshape(x.shape[unit_dim], -1).any(1)
    dead = 1.0 - float(alive.float().mean())
    lo, hi = float(x.min()), float(x.max())
    bounded, saturated = None, 0.0
    # Bounded activations never give many exact zeros; ReLU outputs do, so they are excluded.
    if zero < 0.05 and lo >= -1.0 and hi <= 1.0 and x.numel() > 0:
        if lo < 0:
            bounded, saturated = "tanh-like", float((x.abs() > 0.99).float().mean())
        elif lo >= 0:
            bounded = "sigmoid-like"
            saturated = float(((x < 0.01) | (x > 0.99)).float().mean())
    return {"in_std": float(x.std()) if x.numel() > 1 else 0.0, "zero_fraction": zero,
            "dead_fraction": dead, "saturated_fraction": saturated, "bounded": bounded}


def _fan_in(name: str, weight: torch.Tensor, weight_first: bool) -> int:
    if name in _LINEAR_LIKE:
        return int(weight.shape[-1])
    if name in _CONV_LIKE:
        return int(weight[0].numel())
    return int(weight.shape[-1] if weight_first else weight.shape[-2])


class _Recorder(TorchFunctionMode):
    def __init__(self, names: dict[int, str], owners: dict[int, nn.Module]) -> None:
        super().__init__()
        self.names, self.owners = names, owners
        self.layers: list[LayerTrace] = []
        self.last_op: str | None = None  # the call that produced the most recent tensor
        self.last_result: Any = None

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        if isinstance(result, torch.Tensor) and not name.startswith("__get"):
            self.last_result, self.last_op = result, _describe_call(name, args, kwargs)
        if name in _LINEAR_LIKE | _CONV_LIKE | _MATMUL_LIKE and isinstance(result, torch.Tensor):
            self._record(name, args, result)
        return result

    def _record(self, name: str, args: tuple, result: torch.Tensor) -> None:
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if name == "addmm":
            tensors = tensors[1:]  # addmm(bias, x, W)
        weights = [(i, t) for i, t in enumerate(tensors)
                   if isinstance(t, nn.Parameter) and t.dim() >= 2]
        inputs = [t for t in tensors if not isinstance(t, nn.Parameter)]
        if not weights or not inputs:
            return
        w_pos, weight = weights[0]
        x = inputs[0]
        weight_first = name in _MATMUL_LIKE and w_pos == 0 and name != "__rmatmul__"
        unit_dim = 1 if name in _CONV_LIKE else (-2 if weight_first and x.dim() > 1 else -1)
        param = self.names.get(id(weight), "?")
        owner = self.owners.get(id(weight))
        layer = (f"{param.rsplit('.', 1)[0]} ({type(owner).__name__})"
                 if owner is not None and hasattr(owner, "reset_parameters")
                 and param.endswith("weight") else f"{param} ({name.strip('_')})")
        with torch.no_grad():
            stats = _input_stats(x, unit_dim if x.dim() > 1 else 0)
            out = result.detach().float()
            self.layers.append(LayerTrace(
                layer=layer, param=param, fan_in=_fan_in(name, weight, weight_first),
                out_std=float(out.std()) if out.numel() > 1 else 0.0,
                weight_norm=float(weight.detach().float().norm()), weight=weight, **stats))


def _describe_call(name: str, args: tuple, kwargs: dict) -> str:
    """`softmax(dim=0)`-style text for the call that produced the output."""
    dim = kwargs.get("dim")
    if dim is None and name in ("softmax", "log_softmax") and len(args) > 1:
        dim = args[1]
    return f"{name}(dim={dim})" if dim is not None else name


def parameter_maps(model: nn.Module) -> tuple[dict[int, str], dict[int, nn.Module]]:
    names = {id(p): n for n, p in model.named_parameters()}
    owners = {}
    for module in model.modules():
        for p in module.parameters(recurse=False):
            owners[id(p)] = module
    return names, owners


@dataclass
class Trace:
    output: torch.Tensor  # the model's output, with its graph (for backward)
    layers: list[LayerTrace]
    last_op: str | None  # the call that produced the output, e.g. "softmax(dim=0)"


def trace_forward(model: nn.Module, x: torch.Tensor) -> Trace:
    names, owners = parameter_maps(model)
    recorder = _Recorder(names, owners)
    with recorder:
        out = model(x)
    last = recorder.last_op if recorder.last_result is out else None
    return Trace(out, recorder.layers, last)


def record_gradients(layers: list[LayerTrace]) -> None:
    """After backward: each layer's weight-gradient norm (shared weights: the total)."""
    for layer in layers:
        g = layer.weight.grad if layer.weight is not None else None
        layer.grad_norm = float(g.detach().float().norm()) if g is not None else None


def finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
