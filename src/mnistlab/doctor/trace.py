"""Watch one forward and backward pass of any model, layer by layer, without reading its code.

A `TorchFunctionMode` sees every torch call the forward makes, whether it comes from an
`nn.Linear`, from `F.conv2d`, or from `x @ self.W` on a raw parameter. Every call that
multiplies by a weight parameter (2-D or more) is a "layer": we record the statistics of its
input (what the previous activation produced: dead ReLU units, saturated tanh/sigmoid) and of
its output (the pre-activation scale), its fan-in, and after backward its gradient norm.
Statistics are taken at call time, because in-place activations overwrite the tensors later.

The same mode remembers every softmax/log_softmax call with what fed it and which call
produced that, so that a ReLU hidden under a final log_softmax is seen (`Normalisation`), and
`RandomWatch` sees the random calls a forward makes (dropout, bernoulli, randn_like...) and in
which module, so that dropout that ignores `model.eval()` can be named, or switched off.
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
_NORMALISATIONS = {"softmax", "log_softmax"}
# Calls whose output is bounded whatever their input: (lower, upper) bound, None = unbounded.
# Clamp-like calls take their bounds from the call's own arguments (see _bounds).
_BOUNDED = {"relu": (0.0, None), "relu_": (0.0, None), "softplus": (0.0, None),
            "abs": (0.0, None), "absolute": (0.0, None), "exp": (0.0, None),
            "square": (0.0, None), "sigmoid": (0.0, 1.0), "sigmoid_": (0.0, 1.0),
            "hardsigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "tanh_": (-1.0, 1.0),
            "softsign": (-1.0, 1.0), "relu6": (0.0, 6.0), "elu": (-1.0, None),
            "selu": (-1.7581, None), "celu": (-1.0, None), "gelu": (-0.17, None),
            "silu": (-0.2785, None), "mish": (-0.3089, None)}


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

_CLAMP_LIKE = {"clamp", "clamp_", "clip", "clip_", "clamp_min", "clamp_min_", "hardtanh",
               "hardtanh_"}


def _bounds(name: str, args: tuple, kwargs: dict) -> tuple[float | None, float | None] | None:
    """The range a call's output is confined to, whatever its input; None if not bounded."""
    if name in ("clamp", "clamp_", "clip", "clip_"):
        lo = kwargs.get("min", args[1] if len(args) > 1 else None)
        hi = kwargs.get("max", args[2] if len(args) > 2 else None)
        numbers = [v if v is None or isinstance(v, int | float) else None for v in (lo, hi)]
        return None if numbers == [None, None] else (numbers[0], numbers[1])
    if name in ("clamp_min", "clamp_min_") and len(args) > 1 and isinstance(args[1], int | float):
        return (float(args[1]), None)
    if name in ("hardtanh", "hardtanh_"):
        return (kwargs.get("min_val", args[1] if len(args) > 1 else -1.0),
                kwargs.get("max_val", args[2] if len(args) > 2 else 1.0))
    return _BOUNDED.get(name)


@dataclass
class Normalisation:
    """A softmax/log_softmax call: what fed it, and the call that produced that input."""

    call: str  # "log_softmax(dim=1)"
    dim: int | None
    input: torch.Tensor  # detached copy, taken at call time
    result: torch.Tensor  # detached
    producer: str | None  # the call that produced the input, e.g. "relu", if seen
    bounds: tuple[float | None, float | None] | None  # that call's output range, if bounded

    def feeds(self, output: torch.Tensor) -> bool:
        """Whether the model's output is this call's result (or its log or exp)."""
        out = output.detach()
        if out.shape != self.result.shape:
            return False
        r = self.result.to(out.dtype)
        with torch.no_grad():
            return any(bool(torch.allclose(out, cand, rtol=1e-4, atol=1e-5, equal_nan=False))
                       for cand in (r, r.clamp_min(1e-30).log(), r.exp()))


class _Recorder(TorchFunctionMode):
    def __init__(self, names: dict[int, str], owners: dict[int, nn.Module]) -> None:
        super().__init__()
        self.names, self.owners = names, owners
        self.layers: list[LayerTrace] = []
        self.last_op: str | None = None  # the call that produced the most recent tensor
        self.last_result: Any = None
        self.normalisations: list[Normalisation] = []

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        if name in _NORMALISATIONS and args and isinstance(args[0], torch.Tensor) \
                and isinstance(result, torch.Tensor):
            self._normalisation(name, args, kwargs, result)
        if isinstance(result, torch.Tensor) and not name.startswith("__get"):
            self.last_result, self.last_op = result, _describe_call(name, args, kwargs)
        if name in _LINEAR_LIKE | _CONV_LIKE | _MATMUL_LIKE and isinstance(result, torch.Tensor):
            self._record(name, args, result)
        if isinstance(result, torch.Tensor) and (name in _BOUNDED or name in _CLAMP_LIKE):
            self.bounds_of = (id(result), _bounds(name, args, kwargs))
        return result

    bounds_of: tuple[int, Any] = (0, None)  # the latest bounded call's result and its range

    def _normalisation(self, name: str, args: tuple, kwargs: dict,
                       result: torch.Tensor) -> None:
        x = args[0]
        dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
        produced = self.last_result is x
        bounds = self.bounds_of[1] if self.bounds_of[0] == id(x) and produced else None
        self.normalisations.append(Normalisation(
            call=_describe_call(name, args, kwargs), dim=dim if isinstance(dim, int) else None,
            input=x.detach().float().clone(), result=result.detach().float(),
            producer=self.last_op if produced else None, bounds=bounds))

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
    normalisation: Normalisation | None  # the softmax/log_softmax whose result is the output


def trace_forward(model: nn.Module, x: torch.Tensor) -> Trace:
    names, owners = parameter_maps(model)
    recorder = _Recorder(names, owners)
    with recorder:
        out = model(x)
    last = recorder.last_op if recorder.last_result is out else None
    final = None
    if isinstance(out, torch.Tensor):
        final = next((n for n in reversed(recorder.normalisations) if n.feeds(out)), None)
    return Trace(out, recorder.layers, last, final)


def record_gradients(layers: list[LayerTrace]) -> None:
    """After backward: each layer's weight-gradient norm (shared weights: the total)."""
    for layer in layers:
        g = layer.weight.grad if layer.weight is not None else None
        layer.grad_norm = float(g.detach().float().norm()) if g is not None else None


def finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


# ---- randomness: which random calls a forward makes, and in which module ----------------------
# Dropout-like calls are random only when their `training` argument says so (position, default).
_DROPOUT_LIKE = {"dropout": (2, True), "dropout1d": (2, True), "dropout2d": (2, True),
                 "dropout3d": (2, True), "feature_dropout": (2, True),
                 "alpha_dropout": (2, False), "feature_alpha_dropout": (2, False),
                 "rrelu": (3, False), "rrelu_": (3, False)}
_RANDOM = {"bernoulli", "bernoulli_", "rand", "rand_like", "randn", "randn_like", "randint",
           "randint_like", "normal", "normal_", "uniform_", "multinomial", "randperm",
           "exponential_", "random_", "cauchy_", "log_normal_", "geometric_", "poisson"}


@dataclass
class RandomCall:
    call: str  # "dropout(p=0.5, training=True)"
    module: str  # "fc (Linear)" or "Net" for the model's own forward
    in_eval_mode: bool  # the module running it was in eval mode
    dropout: bool  # a dropout-like call (switchable), rather than a raw random draw

    def describe(self) -> str:
        return f"{self.call} in {self.module}"


def _training_flag(name: str, args: tuple, kwargs: dict) -> bool:
    position, default = _DROPOUT_LIKE[name]
    flag = kwargs.get("training", kwargs.get("train"))
    if flag is None:
        flag = args[position] if len(args) > position else default
    return bool(flag)


class RandomWatch(TorchFunctionMode):
    """Record the random calls of a forward pass; with `suppress`, run dropout-like calls that
    a module makes in eval mode as in eval mode (identity), i.e. as `training=self.training`
    would."""

    def __init__(self, model: nn.Module, suppress: bool = False) -> None:
        super().__init__()
        self.model, self.suppress = model, suppress
        self.calls: list[RandomCall] = []
        self._stack: list[tuple[str, nn.Module]] = []
        self._hooks: list[Any] = []

    def __enter__(self) -> RandomWatch:
        for name, module in self.model.named_modules():
            label = f"{name} ({type(module).__name__})" if name else type(module).__name__
            self._hooks.append(module.register_forward_pre_hook(
                lambda mod, _inp, label=label: self._enter(label, mod)))
            self._hooks.append(module.register_forward_hook(
                lambda _mod, _inp, _out: self._leave()))
        return super().__enter__()

    # Hooks must return None: a value returned would replace the module's input or output.
    def _enter(self, label: str, module: nn.Module) -> None:
        self._stack.append((label, module))

    def _leave(self) -> None:
        if self._stack:
            self._stack.pop()

    def __exit__(self, *exc: Any) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        self._stack.clear()
        super().__exit__(*exc)

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in _DROPOUT_LIKE or name in _RANDOM:
            label, module = self._stack[-1] if self._stack else (type(self.model).__name__,
                                                                 self.model)
            dropout = name in _DROPOUT_LIKE
            if not dropout or _training_flag(name, args, kwargs):
                self.calls.append(RandomCall(_describe_random(name, args, kwargs), label,
                                             not module.training, dropout))
                if dropout and self.suppress and not module.training:
                    args, kwargs = _eval_mode_arguments(name, args, kwargs)
        return func(*args, **kwargs)


def _eval_mode_arguments(name: str, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """The same dropout-like call with its training flag set to False."""
    position, _ = _DROPOUT_LIKE[name]
    if len(args) > position:
        return (*args[:position], False, *args[position + 1:]), kwargs
    key = "train" if "train" in kwargs else "training"
    return args, {**kwargs, key: False}


def _describe_random(name: str, args: tuple, kwargs: dict) -> str:
    if name in _DROPOUT_LIKE:
        p = kwargs.get("p", args[1] if len(args) > 1 and isinstance(args[1], float) else None)
        return f"{name}(" + (f"p={p:g}, " if isinstance(p, float) else "") + "training=True)"
    return name
