"""Pitfall: a ReLU after the last layer, before cross-entropy.

Logits must be able to go negative; after a ReLU they cannot, and a class whose logit is
clamped to 0 gets no gradient. Diagnose:
    mnistlab doctor examples/pitfalls/relu_output.py:Net --lr 0.01
    mnistlab doctor examples/pitfalls/relu_output.py:FixedNet --lr 0.01
"""

import torch
from common import fit
from torch import nn


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(x.flatten(1)))
        return torch.relu(self.fc2(x))  # the bug: the logits cannot be negative


class FixedNet(Net):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)  # raw logits; F.cross_entropy applies log-softmax


if __name__ == "__main__":
    fit(Net(), lr=0.01, label="ReLU on the output")
    fit(FixedNet(), lr=0.01, label="fixed")
