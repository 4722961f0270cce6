"""Convolutional designs from a popular MNIST tutorial, kept side by side for comparison.

Shapes are for a (N, 1, 28, 28) input. Convolutions are unpadded unless noted.
"""

from __future__ import annotations

import torch
from torch import nn

from mnistlab.models.registry import register


def conv_relu(c_in: int, c_out: int, k: int = 3, stride: int = 1,
              padding: int = 0) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding), nn.ReLU()]


@register("convnet-s2", "strided convs 10-48-128-512, fc 8192-1024-128-10 (tutorial: 99.36%)")
class ConvNetS2(nn.Module):
    def __init__(self, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *conv_relu(1, 10),  # (N, 10, 26, 26)
            *conv_relu(10, 48, stride=2),  # (N, 48, 12, 12)
            *conv_relu(48, 128),  # (N, 128, 10, 10)
            *conv_relu(128, 512, stride=2),  # (N, 512, 4, 4)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (N, 8192)
            nn.Dropout(dropout),
            nn.Linear(8192, 1024), nn.ReLU(),
            nn.Linear(1024, 128), nn.ReLU(),
            nn.Linear(128, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register("convnet-s2-small", "strided convs 10-20-40-80-40, fc 160-48-10")
class ConvNetS2Small(nn.Module):
    def __init__(self, dropout: float = 0.25) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *conv_relu(1, 10),  # (N, 10, 26, 26)
            *conv_relu(10, 20, stride=2),  # (N, 20, 12, 12)
            *conv_relu(20, 40),  # (N, 40, 10, 10)
            *conv_relu(40, 80, stride=2),  # (N, 80, 4, 4)
            *conv_relu(80, 40),  # (N, 40, 2, 2)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (N, 160)
            nn.Dropout(dropout),
            nn.Linear(160, 48), nn.ReLU(),
            nn.Linear(48, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register("fullconv", "convs 6-12-24-48-96-48 with two pools, fc 48-10")
class FullConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *conv_relu(1, 6),  # (N, 6, 26, 26)
            *conv_relu(6, 12),  # (N, 12, 24, 24)
            nn.MaxPool2d(2),  # (N, 12, 12, 12)
            *conv_relu(12, 24),  # (N, 24, 10, 10)
            *conv_relu(24, 48),  # (N, 48, 8, 8)
            nn.MaxPool2d(2),  # (N, 48, 4, 4)
            *conv_relu(48, 96),  # (N, 96, 2, 2)
            *conv_relu(96, 48, k=2),  # (N, 48, 1, 1)
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(48, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register("vgg-small", "VGG-style 3x3 stacks 16-16-64-64-64-128-128, fc 128-96-10")
class VGGSmall(nn.Module):
    def __init__(self, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *conv_relu(1, 16, padding=1),  # (N, 16, 28, 28)
            *conv_relu(16, 16, padding=1),  # (N, 16, 28, 28)
            nn.MaxPool2d(2),  # (N, 16, 14, 14)
            *conv_relu(16, 64),  # (N, 64, 12, 12)
            *conv_relu(64, 64),  # (N, 64, 10, 10)
            *conv_relu(64, 64, k=1),  # (N, 64, 10, 10)
            nn.MaxPool2d(2),  # (N, 64, 5, 5)
            *conv_relu(64, 128),  # (N, 128, 3, 3)
            *conv_relu(128, 128),  # (N, 128, 1, 1)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (N, 128)
            nn.Dropout(dropout),
            nn.Linear(128, 96), nn.ReLU(),
            nn.Linear(96, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def conv_bn_prelu(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    # No conv bias: BatchNorm's shift makes it redundant.
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out), nn.PReLU(c_out)]


@register("allconv-bn", "all-conv, BatchNorm+PReLU, stride-2 downsampling (tutorial: 99.5%)")
class AllConvBN(nn.Module):
    def __init__(self, dropout: float = 0.2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *conv_bn_prelu(1, 16),  # (N, 16, 28, 28)
            *conv_bn_prelu(16, 16, stride=2),  # (N, 16, 14, 14)
            *conv_bn_prelu(16, 64),  # (N, 64, 14, 14)
            *conv_bn_prelu(64, 64, stride=2),  # (N, 64, 7, 7)
            *conv_bn_prelu(64, 128),  # (N, 128, 7, 7)
            *conv_bn_prelu(128, 128, stride=2),  # (N, 128, 4, 4)
            *conv_bn_prelu(128, 96),  # (N, 96, 4, 4)
            nn.Dropout(dropout),
        )
        # A 1x1 convolution scores each position; averaging the scores gives the logits.
        self.classifier = nn.Sequential(
            nn.Conv2d(96, 10, 1),  # (N, 10, 4, 4)
            nn.AdaptiveAvgPool2d(1),  # (N, 10, 1, 1)
            nn.Flatten(),  # (N, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
