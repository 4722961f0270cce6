"""Pitfall: softmax over the batch (dim=0) before CrossEntropyLoss.

Two mistakes in one line: cross-entropy applies log-softmax itself, and dim=0 normalises
each class across the batch instead of each image across the classes. Diagnose:
    mnistlab doctor examples/pitfalls/softmax_dim0.py:Net --lr 0.01
    mnistlab doctor examples/pitfalls/softmax_dim0.py:FixedNet --lr 0.01
"""

import torch
import torch.nn.functional as F
from common import MLP, fit


class Net(MLP):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softmax(self.layers(x), dim=0)  # the bug: over the batch, and before the loss


class FixedNet(MLP):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # logits; use .softmax(dim=1) only to read probabilities


if __name__ == "__main__":
    fit(Net(), lr=0.01, label="softmax(dim=0) before cross-entropy")
    fit(FixedNet(), lr=0.01, label="fixed")
