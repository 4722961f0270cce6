"""The network of the official PyTorch MNIST example (pytorch/examples, mnist/main.py).

The example ends in log_softmax and trains with NLLLoss; here it returns logits, which
with CrossEntropyLoss is the same computation.
"""

from __future__ import annotations

import torch
from torch import nn

from mnistlab.models.registry import register


@register("pytorch-example", "official PyTorch example: conv 32, conv 64, pool, fc 9216-128-10")
class PyTorchExampleNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(),  # (N, 32, 26, 26)
            nn.Conv2d(32, 64, 3), nn.ReLU(),  # (N, 64, 24, 24)
            nn.MaxPool2d(2),  # (N, 64, 12, 12)
            nn.Dropout(0.25),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (N, 9216)
            nn.Linear(9216, 128), nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(128, 10),  # logits
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
