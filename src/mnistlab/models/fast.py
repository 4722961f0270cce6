"""`fast` and `fast-strided` (the default model): small conv-BN-ReLU networks sized for CPU
training speed.

On a CPU a small CNN spends its time less on multiply-adds than on moving activations
through memory (convolution, BatchNorm, ReLU and pooling each read and write the whole
activation map). So the design keeps the largest maps small:

    stem   5x5 conv, stride 2, 1 -> w       (N, w, 14, 14)   sees a 5x5 patch, halves at once
    block  3x3 conv, w -> 2w, 2x2 max-pool  (N, 2w, 7, 7)
    block  3x3 conv, 2w -> 2w, 2x2 max-pool (N, 2w, 3, 3)
    head   linear 18w -> 10

Every conv is followed by BatchNorm (which lets a high one-cycle learning rate converge in
one or two epochs) and ReLU. Measured on a 2-core AMD EPYC with bf16 autocast and
channels-last (benchmarks/levers.py, docs/speed.md), width 16 trains at about 25k images/s,
against 6k for the previous design (three 3x3 conv blocks at 28, 14 and 7 pixels, width
32): the full-resolution 3x3 conv stack was the cost, and the strided 5x5 stem loses no
accuracy in two epochs (99.2%, mean of 5 seeds). Widening the last block to 4w bought no
accuracy and cost 20% of the speed; striding every conv instead of pooling was 1.8x faster
again but left too thin a margin above 99% - until label smoothing and a hidden fully
connected layer bought it back: that is `fast-strided` below, the default since. `width`
scales every layer; the `best` recipe uses `fast` at width 56 with augmentation.
"""

from __future__ import annotations

import torch
from torch import nn

from mnistlab.models.registry import register


def conv_bn_relu(c_in: int, c_out: int, k: int, stride: int = 1) -> list[nn.Module]:
    # No conv bias: the BatchNorm shift that follows makes it redundant.
    return [nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU()]


@register("fast", "strided 5x5 stem, 2 conv-BN-ReLU-pool blocks, fc (the `best` recipe's net)")
class FastNet(nn.Module):
    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *conv_bn_relu(1, w, 5, stride=2),  # (N, w, 14, 14)
            *conv_bn_relu(w, 2 * w, 3), nn.MaxPool2d(2),  # (N, 2w, 7, 7)
            *conv_bn_relu(2 * w, 2 * w, 3), nn.MaxPool2d(2),  # (N, 2w, 3, 3)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (N, 18w)
            nn.Linear(2 * w * 3 * 3, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register("fast-strided", "default: 3 strided conv-BN-ReLU (no pooling), fc 128; for CPU speed")
class StridedNet(nn.Module):
    """Every convolution strides, nothing pools: 28 -> 14 -> 7 -> 4 pixels.

        stem   5x5 conv, stride 2, 1 -> w     (N, w, 14, 14)
        conv   3x3 conv, stride 2, w -> 2w    (N, 2w, 7, 7)
        conv   3x3 conv, stride 2, 2w -> 4w   (N, 4w, 4, 4)
        head   linear 64w -> 8w, BatchNorm, ReLU, linear 8w -> 10

    `fast` spends 63% of its multiply-adds on a 3x3 convolution at 14x14 pixels; here that
    convolution strides to 7x7, so no map after the stem is larger than 7x7. With width 16
    that is 0.73 M multiply-adds per image against `fast`'s 1.44 M, and training takes about
    1.3x as many images per second as `fast` at its batch of 128 did (AMD EPYC, one thread,
    bf16 + channels-last; benchmarks/levers.py, docs/speed.md).
    The hidden fully connected layer costs little time (one matrix product on 4x4 maps) and
    buys back the accuracy that striding loses: without it, and with the default recipe's
    outlier exposure, a seed fell to 98.8% after two epochs. The default recipe trains it for
    a single epoch at batch 128 (label smoothing 0.2): 99.00-99.13% over 5 seeds
    (docs/speed.md has the seeds and what was tried).
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *conv_bn_relu(1, w, 5, stride=2),  # (N, w, 14, 14)
            *conv_bn_relu(w, 2 * w, 3, stride=2),  # (N, 2w, 7, 7)
            *conv_bn_relu(2 * w, 4 * w, 3, stride=2),  # (N, 4w, 4, 4)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (N, 64w)
            nn.Linear(4 * w * 4 * 4, 8 * w, bias=False), nn.BatchNorm1d(8 * w), nn.ReLU(),
            nn.Linear(8 * w, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
