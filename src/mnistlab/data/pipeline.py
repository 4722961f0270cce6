"""The in-memory input pipeline: split, normalise, batch by index gather, augment per batch.

Following tinygrad's beautiful_mnist: a split is one uint8 tensor and a batch is
`images[indices]`. Per-batch work is vectorised; nothing loops over samples in Python.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mnistlab.data.split import split_indices


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # uint8 (N, 28, 28)
    labels: torch.Tensor  # int64 (N,)

    def __len__(self) -> int:
        return len(self.labels)


def train_val_split(images: torch.Tensor, labels: torch.Tensor, val_size: int,
                    seed: int) -> tuple[Split, Split]:
    """Hold out `val_size` random training images for model selection (the test set never is)."""
    # The same draw as the NumPy backend's (data.split): same seed, same validation images.
    train_np, val_np = split_indices(len(labels), val_size, seed)
    train_idx, val_idx = torch.from_numpy(train_np), torch.from_numpy(val_np)
    return Split(images[train_idx], labels[train_idx]), Split(images[val_idx], labels[val_idx])


@dataclass(frozen=True)
class Normalizer:
    """Standardise pixels with the training set's statistics (MNIST: mean 0.1307, std 0.3081)."""

    mean: float  # of pixel values scaled to [0, 1]
    std: float

    @classmethod
    def fit(cls, images: torch.Tensor) -> Normalizer:
        x = images.double().div_(255.0)
        return cls(mean=float(x.mean()), std=float(x.std()))

    # One fused affine map on raw pixels: (x/255 - mean)/std == x * scale + shift.
    @property
    def scale(self) -> float:
        return 1.0 / (255.0 * self.std)

    @property
    def shift(self) -> float:
        return -self.mean / self.std

    def __call__(self, images_u8: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """uint8 (B, 28, 28) -> float (B, 1, 28, 28), zero mean and unit variance."""
        return images_u8.unsqueeze(1).to(dtype).mul_(self.scale).add_(self.shift)


# MNIST's training-set statistics: the fallback for models that carry no normaliser of their own.
MNIST_NORMALIZER = Normalizer(mean=0.1307, std=0.3081)


@dataclass(frozen=True)
class Augment:
    """Random affine jitter per image, applied to a whole batch at once with grid_sample;
    optionally an elastic distortion in the same sampling grid (Simard, Steinkraus and Platt,
    2003): every pixel moves by a random field smoothed with a Gaussian of ELASTIC_SIGMA
    pixels, so that strokes bend as a pen's would rather than jitter pixel by pixel."""

    max_shift: float = 2.0  # pixels
    max_rotate: float = 10.0  # degrees
    max_scale: float = 0.1  # relative
    elastic: float = 0.0  # standard deviation of the elastic displacement, pixels; 0: off

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = x.shape[0]

        def uniform(limit: float) -> torch.Tensor:
            return (torch.rand(n, generator=generator) * 2 - 1) * limit

        angle = uniform(math.radians(self.max_rotate))
        scale = 1 + uniform(self.max_scale)
        # affine_grid works in [-1, 1] coordinates: a shift of s pixels is 2*s/28.
        tx, ty = uniform(2 * self.max_shift / 28), uniform(2 * self.max_shift / 28)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
        grid = F.affine_grid(theta.to(x.dtype).to(x.device), list(x.shape), align_corners=False)
        if self.elastic > 0:
            grid = grid + self._displacement(x, generator)
        # Pad with the normalised value of a black pixel, not with zero.
        background = x.amin(dim=(1, 2, 3), keepdim=True)
        out = F.grid_sample(x - background, grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)
        return out + background

    def _displacement(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(N, H, W, 2) smooth random displacements in grid units ([-1, 1] spans the image),
        with a per-pixel standard deviation of `elastic` pixels."""
        n, _, h, w = x.shape
        kernel = _gaussian(ELASTIC_SIGMA)
        radius = len(kernel) // 2
        field = torch.randn(n * 2, 1, h, w, generator=generator)
        field = F.conv2d(field, kernel.view(1, 1, 1, -1), padding=(0, radius))
        field = F.conv2d(field, kernel.view(1, 1, -1, 1), padding=(radius, 0))
        # Smoothing unit white noise with the separable kernel k x k leaves a standard
        # deviation of sum(k^2) (away from the borders): divide it out, per image alike.
        field = field * (self.elastic / float(kernel.square().sum()))
        field = field.view(n, 2, h, w).permute(0, 2, 3, 1)  # (N, H, W, [dx, dy])
        scale = torch.tensor([2.0 / w, 2.0 / h])
        return (field * scale).to(x.dtype).to(x.device)


ELASTIC_SIGMA = 4.0  # pixels: the smoothing of elastic displacements (Simard et al. used 4)


@functools.cache
def _gaussian(sigma: float) -> torch.Tensor:
    """A normalised 1-D Gaussian kernel over +-3 sigma (made once, not every batch)."""
    radius = math.ceil(3 * sigma)
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-taps.square() / (2 * sigma**2))
    return kernel / kernel.sum()


class Batcher:
    """Yield normalised (x, y) batches from a split.

    Stateless across epochs: the shuffle of epoch `e` is a permutation seeded by (seed, e) and
    the augmentation of batch `i` by (seed, e, i). So a run resumed at any batch sees exactly
    the batches an uninterrupted run would have seen, with no generator state to save.
    With `shard=(rank, world)`, every rank draws the same permutation and takes its stride.
    """

    def __init__(self, split: Split, batch_size: int, normalizer: Normalizer, *,
                 shuffle: bool = False, seed: int = 0, augment: Augment | None = None,
                 drop_last: bool = False, device: torch.device | str = "cpu",
                 shard: tuple[int, int] = (0, 1)) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.split, self.batch_size, self.normalizer = split, batch_size, normalizer
        self.shuffle, self.seed, self.augment, self.drop_last = shuffle, seed, augment, drop_last
        self.device = torch.device(device)
        self.rank, self.world = shard
        # Keep the data where the model is: one host-to-device copy, not one per batch.
        self.images = split.images.to(self.device)
        self.labels = split.labels.to(self.device)

    def _generator(self, *key: int) -> torch.Generator:
        # A distinct, reproducible stream per (seed, epoch[, batch]).
        seed = self.seed
        for k in key:
            seed = (seed * 1_000_003 + k + 1) % (2**63)
        return torch.Generator().manual_seed(seed)

    def order(self, epoch: int) -> torch.Tensor:
        n = len(self.split)
        if self.shuffle:
            order = torch.randperm(n, generator=self._generator(epoch))
        else:
            order = torch.arange(n)
        if self.world > 1:
            order = order[: n - n % self.world][self.rank :: self.world]
        return order

    def __len__(self) -> int:
        n = len(self.split) // self.world if self.world > 1 else len(self.split)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches `start`, `start + 1`, ... of epoch `epoch`."""
        order = self.order(epoch).to(self.device)
        for i in range(start, len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            x = self.normalizer(self.images[idx])
            if self.augment is not None:
                x = self.augment(x, self._generator(epoch, i))
            yield x, self.labels[idx]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch(0)
