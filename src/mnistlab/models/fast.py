"""`fast`: the default model, a small conv-BN-ReLU network sized for CPU training speed.

Three 3x3 conv blocks with BatchNorm (which lets a high learning rate converge in one or
two epochs), each halving the resolution with max-pooling, then a linear classifier.
"""

from __future__ import annotations

import torch
from torch import nn

from mnistlab.models.registry import register


def conv_bn_relu_pool(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
            nn.MaxPool2d(2)]


@register("fast", "default: 3 conv-BN-ReLU-pool blocks, fc; built for CPU speed")
class FastNet(nn.Module):
    def __init__(self, width: int = 32) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *conv_bn_relu_pool(1, w),  # (N, w, 14, 14)
            *conv_bn_relu_pool(w, 2 * w),  # (N, 2w, 7, 7)
            *conv_bn_relu_pool(2 * w, 4 * w),  # (N, 4w, 3, 3)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (N, 36w)
            nn.Linear(4 * w * 3 * 3, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
