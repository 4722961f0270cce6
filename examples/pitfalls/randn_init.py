"""Pitfall: weights drawn with torch.randn and no scaling (three layers, 200 hidden units).

Each layer multiplies the signal's scale by about sqrt(fan-in): the logits come out in the
thousands, the softmax is saturated, and the loss does not move. Diagnose:
    mnistlab doctor examples/pitfalls/randn_init.py:Net --lr 0.01
    mnistlab doctor examples/pitfalls/randn_init.py:FixedNet --lr 0.01
"""

import itertools

import torch
from common import fit
from torch import nn

SIZES = (784, 200, 200, 10)


class Net(nn.Module):
    def __init__(self, scaled: bool = False) -> None:
        super().__init__()
        weights = []
        for n_in, n_out in itertools.pairwise(SIZES):
            w = torch.randn(n_in, n_out)  # the bug when unscaled: std 1 whatever the fan-in
            if scaled:  # Kaiming/He: std sqrt(2 / fan-in) keeps the scale through ReLUs
                w = w * (2 / n_in) ** 0.5
            weights.append(nn.Parameter(w))
        self.weights = nn.ParameterList(weights)
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(n)) for n in SIZES[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = x @ w + b
            if i < len(self.weights) - 1:
                x = x.relu()
        return x


def FixedNet() -> Net:  # a factory function works too: mnistlab doctor file.py:FixedNet
    return Net(scaled=True)


if __name__ == "__main__":
    fit(Net(), lr=0.01, label="unscaled randn init")
    fit(FixedNet(), lr=0.01, label="fixed (Kaiming)")
