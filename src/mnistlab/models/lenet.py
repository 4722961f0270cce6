"""LeNet-5 (LeCun et al., 1998) with ReLU and max-pooling, as it is usually written today."""

from __future__ import annotations

import torch
from torch import nn

from mnistlab.models.registry import register


@register("lenet5", "LeNet-5: conv 6@5x5, pool, conv 16@5x5, pool, fc 256-120-84-10")
class LeNet5(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5), nn.ReLU(),  # (N, 6, 24, 24)
            nn.MaxPool2d(2),  # (N, 6, 12, 12)
            nn.Conv2d(6, 16, 5), nn.ReLU(),  # (N, 16, 8, 8)
            nn.MaxPool2d(2),  # (N, 16, 4, 4)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (N, 256)
            nn.Linear(256, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, 10),  # logits
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
