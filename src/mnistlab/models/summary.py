"""Keras-style `summary`: every layer's output shape, parameters and multiply-accumulates.

Works on any nn.Module through forward hooks on its leaf modules, so a user's own model is
described exactly like a zoo model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class LayerInfo:
    name: str  # dotted module path, e.g. "features.0"
    kind: str  # class name, e.g. "Conv2d"
    output_shape: tuple[int, ...]  # per image, batch dimension dropped
    params: int
    macs: int  # multiply-accumulates per image


def _macs(module: nn.Module, output: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d | nn.Conv1d):
        per_output = module.in_channels // module.groups
        for k in module.kernel_size:
            per_output *= k
        return per_output * output[0].numel()
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features
    return 0


@torch.no_grad()
def describe(model: nn.Module, input_shape: tuple[int, ...] = (1, 1, 28, 28)) -> list[LayerInfo]:
    """Run one forward pass on zeros and record every leaf module in call order."""
    layers: list[LayerInfo] = []
    hooks = []

    def hook(name: str):
        def record(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            if isinstance(output, torch.Tensor):
                layers.append(LayerInfo(
                    name=name, kind=type(module).__name__,
                    output_shape=tuple(output.shape[1:]),
                    params=sum(p.numel() for p in module.parameters(recurse=False)),
                    macs=_macs(module, output)))
        return record

    for name, module in model.named_modules():
        if not any(module.children()):
            hooks.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    try:
        model.eval()
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        model(torch.zeros(input_shape, device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return layers


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def summarize(model: nn.Module, title: str | None = None) -> str:
    """A table of layers, output shapes, parameters and MACs, with totals."""
    layers = describe(model)
    rows = [(f"{layer.name} ({layer.kind})", "x".join(map(str, layer.output_shape)),
             f"{layer.params:,}", f"{layer.macs:,}") for layer in layers]
    header = ("layer", "output shape", "params", "MACs/image")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    rule = "-" * len(line(header))
    out = [title or type(model).__name__, rule, line(header), rule, *map(line, rows), rule]
    total = count_params(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    macs = sum(layer.macs for layer in layers)
    out.append(f"input 1x28x28 -> output {'x'.join(map(str, layers[-1].output_shape))}; "
               f"params {total:,} ({trainable:,} trainable); {macs:,} MACs per image")
    return "\n".join(out)
