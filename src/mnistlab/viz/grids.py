"""Grids of small images drawn as one mosaic: sample digits, mistakes, feature-map channels.

A mosaic is a single image with blank (NaN) gaps between the tiles, shown in one Axes. A
layer of 64 channels is one artist rather than 64 Axes, so a figure of a whole network
draws in a fraction of a second and every tile gets the same colour scale.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from mnistlab.errors import MnistlabError
from mnistlab.viz.style import axes_at, new_figure, save_figure, styled


@dataclass(frozen=True)
class Mosaic:
    array: np.ndarray  # (H, W) float; NaN in gaps and in empty cells
    count: int  # tiles holding an image
    rows: int
    cols: int
    tile: int  # tile side in mosaic pixels (images are upscaled to square tiles)
    gap: tuple[int, int]  # (between rows, between columns) in mosaic pixels

    def origin(self, i: int) -> tuple[float, float]:
        """(x, y) of tile i's top-left corner in imshow data coordinates."""
        r, c = divmod(i, self.cols)
        return (c * (self.tile + self.gap[1]) - 0.5 + self.gap[1],
                r * (self.tile + self.gap[0]) - 0.5 + self.gap[0])


def make_mosaic(tiles: np.ndarray | torch.Tensor, cols: int, gap: tuple[int, int] = (1, 1),
                min_tile: int = 28, cells: int | None = None) -> Mosaic:
    """Lay (N, h, w) images out `cols` to a row, upscaled by whole pixels to at least
    `min_tile` so that a 3x3 map and a 28x28 map show at the same size. `cells` reserves
    more cells than images (the rest stay blank). Gaps lead each row and column, so a title
    fits above the first row."""
    tiles = np.asarray(tiles.detach().cpu() if isinstance(tiles, torch.Tensor) else tiles,
                       dtype=np.float32)
    n, h, w = tiles.shape
    side = max(h, w)
    scale = max(1, math.ceil(min_tile / side))
    tile = side * scale
    cells = max(n, cells or 0)
    cols = max(1, min(cols, cells))
    rows = max(1, math.ceil(cells / cols))
    gy, gx = gap
    out = np.full((rows * (tile + gy) + gy, cols * (tile + gx) + gx), np.nan, dtype=np.float32)
    big = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    oy, ox = (tile - h * scale) // 2, (tile - w * scale) // 2
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = gy + r * (tile + gy) + oy, gx + c * (tile + gx) + ox
        out[y : y + h * scale, x : x + w * scale] = big[i]
    return Mosaic(out, n, rows, cols, tile, gap)


def mosaic_inches(mosaic: Mosaic, tile_in: float) -> tuple[float, float]:
    """The (width, height) in inches that shows each tile `tile_in` wide."""
    h, w = mosaic.array.shape
    return w * tile_in / mosaic.tile, h * tile_in / mosaic.tile


def draw_mosaic(ax: Axes, mosaic: Mosaic, cmap: str = "gray_r", vmin: float = 0.0,
                vmax: float = 1.0, titles: list[str] | None = None,
                title_colors: list[str] | None = None, fontsize: float = 8) -> AxesImage:
    import matplotlib

    colormap = matplotlib.colormaps[cmap].with_extremes(bad="white")
    image = ax.imshow(np.ma.masked_invalid(mosaic.array), cmap=colormap, vmin=vmin, vmax=vmax,
                      interpolation="nearest", aspect="equal")
    bare(ax)
    for i, text in enumerate(titles or []):
        x, y = mosaic.origin(i)
        ax.text(x + mosaic.tile / 2, y - 0.6, text, ha="center", va="bottom", fontsize=fontsize,
                color=(title_colors or [])[i] if title_colors else "black", clip_on=False)
    return image


def bare(ax: Axes) -> None:
    """No ticks, spines or grid: the axes only holds an image."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)


# ---- samples of a data set ---------------------------------------------------------------
def sample_indices(labels: torch.Tensor, per_class: int, num_classes: int = 10,
                   seed: int = 0) -> torch.Tensor:
    """(num_classes, per_class) random indices of each class, -1 where a class has too few."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    out = torch.full((num_classes, per_class), -1, dtype=torch.long)
    shuffled = labels[order]
    for k in range(num_classes):
        chosen = order[shuffled == k][:per_class]
        out[k, : len(chosen)] = chosen
    return out


@styled
def sample_grid_figure(images: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...],
                       per_class: int = 10, seed: int = 0, title: str | None = None) -> Figure:
    """One row per class of `per_class` random examples, the class named at the left."""
    if per_class < 1:
        raise MnistlabError(f"--per-class must be at least 1, got {per_class}")
    idx = sample_indices(labels, per_class, len(classes), seed).flatten()
    tiles = np.full((len(idx), *images.shape[1:]), np.nan, dtype=np.float32)
    present = idx >= 0
    tiles[present.numpy()] = images[idx[present]].float().numpy() / 255.0
    mosaic = make_mosaic(tiles, cols=per_class, gap=(2, 2))
    tile_in = min(0.6, 8.4 / per_class)
    width, height = mosaic_inches(mosaic, tile_in)
    left = 0.25 + 0.075 * max(len(c) for c in classes)
    fig = new_figure(left + width + 0.2, height + 0.55)
    ax = axes_at(fig, left, 0.45, width, height)
    draw_mosaic(ax, mosaic, cmap="gray_r")
    ax.set_yticks([mosaic.origin(k * per_class)[1] + mosaic.tile / 2 for k in range(len(classes))],
                  labels=list(classes))
    ax.tick_params(axis="y", length=0, labelsize=9)
    fig.suptitle(title or f"{per_class} random examples per class", x=0.02, y=1 - 0.12
                 / fig.get_figheight(), ha="left", va="top", fontsize=10, fontweight="bold")
    return fig


def write_sample_grid(data, output: str | os.PathLike[str], per_class: int = 10,
                      split: str = "train", seed: int = 0, fmt: str | None = None) -> Path:
    """`mnistlab data sample`: a labelled grid of examples of every class of a DigitData."""
    if split not in ("train", "test"):
        raise MnistlabError(f"--split must be train or test, got '{split}'")
    images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
    fig = sample_grid_figure(images, labels, data.classes, per_class, seed,
                             title=f"{data.spec.title} ({split}): {per_class} random examples "
                                   "per class")
    return save_figure(fig, output, fmt)
