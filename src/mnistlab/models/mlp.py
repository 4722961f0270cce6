"""Multi-layer perceptrons: the networks people write first.

`layers` is a Sequential of Linear (even indices) and activations (odd indices), the layout
that `mnistlab.scratch` converts to and from. The last Linear gives logits: no activation.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from mnistlab.errors import MnistlabError
from mnistlab.models.registry import register

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def parse_hidden(hidden: str | int | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """Accept `"512,256"`, `200`, `(200, 200)`; an empty string means no hidden layer."""
    try:
        if isinstance(hidden, str):
            sizes = tuple(int(h) for h in hidden.replace(" ", "").split(",") if h)
        elif isinstance(hidden, int):
            sizes = (hidden,)
        else:
            sizes = tuple(int(h) for h in hidden)
    except (TypeError, ValueError):
        raise MnistlabError(f"hidden: expected layer sizes such as 512,256, got {hidden!r}"
                            ) from None
    if any(h < 1 for h in sizes):
        raise MnistlabError(f"hidden: layer sizes must be at least 1, got {hidden!r}")
    return sizes


@register("mlp", "fully connected 784 -> hidden... -> 10 (--hidden 64 | 200,200 | 512,256)")
class MLP(nn.Module):
    def __init__(self, hidden: str | tuple[int, ...] = "512,256", activation: str = "relu") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise MnistlabError(f"activation: unknown '{activation}'; choose one of: "
                                f"{', '.join(ACTIVATIONS)}")
        sizes = (28 * 28, *parse_hidden(hidden), 10)
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
            layers.append(nn.Linear(n_in, n_out))  # (N, n_in) -> (N, n_out)
            if i < len(sizes) - 2:
                layers.append(ACTIVATIONS[activation]())
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.flatten(1))  # (N, 1, 28, 28) -> (N, 784) -> (N, 10)
