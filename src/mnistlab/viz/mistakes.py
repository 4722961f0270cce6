"""Which digits does it confuse? The test images a model gets wrong, and the confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure
from torch import nn

from mnistlab.data.pipeline import Batcher, Normalizer, Split
from mnistlab.evaluate import predict_logits, result_from_logits
from mnistlab.text import plural
from mnistlab.viz.grids import draw_mosaic, make_mosaic, mosaic_inches
from mnistlab.viz.style import axes_at, new_figure, styled

CHAR_IN = 0.068  # inches per character of an 8.5 pt title, a safe average


@dataclass
class Mistakes:
    """The wrong predictions on a split, most confident first."""

    indices: torch.Tensor  # positions in the split
    true: torch.Tensor
    predicted: torch.Tensor
    confidence: torch.Tensor  # softmax probability of the predicted class
    confusion: torch.Tensor  # (classes, classes): rows true, columns predicted
    total: int  # images evaluated

    def __len__(self) -> int:
        return len(self.indices)


def find_mistakes(model: nn.Module, split: Split, normalizer: Normalizer,
                  device: torch.device | str = "cpu", batch_size: int = 1000,
                  num_classes: int = 10, bf16: bool = False) -> Mistakes:
    """`bf16` evaluates as a run trained with bf16 autocast was tested, so that the counts
    match its summary."""
    batcher = Batcher(split, batch_size, normalizer, device=device)
    logits, labels = predict_logits(model, batcher, bf16)
    confusion = result_from_logits(logits, labels, num_classes).confusion
    confidence, predicted = torch.softmax(logits, 1).max(1)
    wrong = (predicted != labels).nonzero().squeeze(1)
    order = wrong[confidence[wrong].argsort(descending=True, stable=True)]
    return Mistakes(order, labels[order], predicted[order], confidence[order], confusion,
                    len(labels))


@styled
def mistakes_figure(images: torch.Tensor, mistakes: Mistakes, classes: tuple[str, ...],
                    limit: int = 32, cols: int = 8, title: str | None = None) -> Figure:
    """The `limit` most confident mistakes, each titled "true → predicted (probability)"."""
    shown = min(limit, len(mistakes))
    width = 10.0
    if shown == 0:
        fig = new_figure(width, 1.0)
        fig.text(0.03, 0.5, title or f"no mistakes on {mistakes.total:,} images", fontsize=11,
                 fontweight="bold", va="center")
        return fig
    # Digits make short titles; class names such as "T-shirt/top" get two lines and wider
    # columns, so that neighbouring titles never overlap.
    two_lines = max(len(c) for c in classes) > 2
    titles = [f"{classes[int(t)]} →{chr(10) if two_lines else ' '}{classes[int(p)]} "
              f"({100 * float(c):.0f}%)"
              for t, p, c in zip(mistakes.true[:shown], mistakes.predicted[:shown],
                                 mistakes.confidence[:shown], strict=True)]
    text_in = CHAR_IN * max(len(line) for t in titles for line in t.splitlines())
    tile_in = 0.9
    pitch = max(tile_in * 1.15, text_in + 0.15)  # inches from one column to the next
    cols = max(1, min(cols, shown, int(9.6 // pitch)))
    px = 28 / tile_in  # mosaic pixels per inch
    gap_x = round((pitch - tile_in) * px)
    gap_y = round(((0.34 if two_lines else 0.2) + 0.08) * px)
    tiles = images[mistakes.indices[:shown]].float().numpy() / 255.0
    mosaic = make_mosaic(tiles, cols, gap=(gap_y, gap_x), cells=shown)
    w, h = mosaic_inches(mosaic, tile_in)
    fig = new_figure(width, h + 0.45 - gap_y / px)  # the gap after the last row is not needed
    ax = axes_at(fig, (width - w) / 2, 0.35, w, h)
    draw_mosaic(ax, mosaic, cmap="gray_r", titles=titles, fontsize=8.5)
    ax.set_label("mistakes")
    rate = len(mistakes) / max(mistakes.total, 1)
    heading = title or (f"most confident mistakes: {shown} of {len(mistakes):,} wrong "
                        f"({100 * rate:.2f}% of {mistakes.total:,})")
    fig.text(0.03, 1 - 0.12 / fig.get_figheight(), heading + "   ·   true → predicted "
             "(probability)", ha="left", va="top", fontsize=10.5, fontweight="bold")
    return fig


@styled
def confusion_figure(confusion: torch.Tensor, classes: tuple[str, ...],
                     title: str | None = None) -> Figure:
    """The confusion matrix as a heat map of counts. An error cell's colour is its share of
    the true class (row) relative to the worst confusion (power 0.75, so that single errors
    still show); the diagonal has its own green scale so a thousand right answers do not
    wash out the errors. Every non-zero cell is written out."""
    counts = confusion.numpy().astype(np.int64)
    n = len(classes)
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    off = rates.copy()
    np.fill_diagonal(off, 0)
    side = 6.2
    longest = max(len(c) for c in classes)
    left = 0.9 + 0.07 * longest
    top = 0.75 + (0.05 * longest if longest > 2 else 0)  # room for slanted names on top
    fig = new_figure(left + side + 1.3, side + top + 0.3)
    ax = axes_at(fig, left, top, side, side)
    ax.imshow(np.ma.masked_equal(off, 0), cmap="Reds",
              norm=PowerNorm(0.75, vmin=0, vmax=max(off.max(), 1e-9)))
    # The diagonal is the right answers: its own colour so it does not swamp the errors.
    diag = np.where(np.eye(n, dtype=bool), rates, np.nan)
    ax.imshow(np.ma.masked_invalid(diag), cmap="Greens", vmin=0, vmax=1.6)
    big = off.max() * 0.55
    for i in range(n):
        for j in range(n):
            if counts[i, j] == 0:
                continue
            strong = (i != j and off[i, j] > big)
            ax.text(j, i, f"{counts[i, j]:,}", ha="center", va="center",
                    fontsize=8, color="white" if strong else "black",  # one size for all
                    fontweight="bold" if i == j else "normal")
    slanted = longest > 2
    ax.set_xticks(range(n), labels=classes, rotation=45 if slanted else 0,
                  ha="left" if slanted else "center", rotation_mode="anchor")
    ax.set_yticks(range(n), labels=classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.xaxis.set_label_position("top")
    ax.xaxis.tick_top()
    ax.grid(False)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_label("confusion")
    # Per-class accuracy down the right: the row sums say how many of each there were.
    support = counts.sum(1)
    for i in range(n):
        acc = counts[i, i] / max(support[i], 1)
        ax.text(n - 0.3, i, f"{100 * acc:.1f}%", ha="left", va="center", fontsize=8,
                color="#333")
    ax.text(n - 0.3, -0.9, "accuracy", ha="left", va="center", fontsize=8, fontweight="bold")
    total, right = counts.sum(), np.trace(counts)
    fig.text(0.03, 1 - 0.12 / fig.get_figheight(),
             title or f"confusion matrix: {plural(int(total - right), 'error')} in {total:,} "
                      f"({100 * right / max(total, 1):.2f}% right)",
             ha="left", va="top", fontsize=10.5, fontweight="bold")
    return fig
