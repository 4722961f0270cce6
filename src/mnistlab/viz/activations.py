"""Capture what every layer of any nn.Module outputs, with forward hooks (no per-model code)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Activation:
    name: str  # dotted module path, e.g. "features.3"
    kind: str  # class name, e.g. "Conv2d"
    output: torch.Tensor  # detached, float32, on the CPU: (N, C, H, W) or (N, F)


@torch.no_grad()
def capture_activations(model: nn.Module, x: torch.Tensor,
                        kinds: tuple[type[nn.Module], ...] | None = None) -> tuple[list[Activation],
                                                                                  torch.Tensor]:
    """Run `model(x)` in eval mode; return the outputs of its leaf modules in call order, and
    the logits. `kinds` keeps only modules of those types (default: all leaves)."""
    captured: list[Activation] = []
    hooks = []

    def hook(name: str):
        def record(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            if isinstance(output, torch.Tensor):
                captured.append(Activation(name, type(module).__name__,
                                           output.detach().float().cpu()))
        return record

    for name, module in model.named_modules():
        leaf = not any(module.children())
        if leaf and (kinds is None or isinstance(module, kinds)):
            hooks.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    try:
        model.eval()
        logits = model(x).detach().float().cpu()
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return captured, logits
