"""What does layer 2 see? Every convolution, activation and pooling output for one image.

Works on any nn.Module that maps (N, 1, 28, 28) to logits: layer outputs are captured with
forward hooks (`mnistlab.viz.activations.capture_activations`), so there is no per-model
code. Layers called functionally inside `forward` (`F.relu(x)`) have no module to hook and
do not appear; write them as modules (`nn.ReLU()`) to see them.

The picture, top to bottom: the input; for an MLP, its first layer's weights as 28x28
templates; one panel per layer in call order, a grid of its channels (or bars for a vector
or a 1x1 map) titled with the layer's name, type and output shape; then the 10 logits and
their softmax probabilities with the predicted class marked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import nn
from torch.nn.modules import activation as nn_activation
from torch.nn.modules import conv as nn_conv
from torch.nn.modules import pooling as nn_pooling

from mnistlab.data.pipeline import MNIST_NORMALIZER, Normalizer
from mnistlab.errors import MnistlabError
from mnistlab.viz.activations import Activation, capture_activations
from mnistlab.viz.grids import bare, draw_mosaic, make_mosaic, mosaic_inches
from mnistlab.viz.style import BAD, GOOD, NEUTRAL, WIDTH, axes_at, new_figure, styled


def _classes_of(module, base: type) -> tuple[type[nn.Module], ...]:
    return tuple(v for v in vars(module).values()
                 if isinstance(v, type) and issubclass(v, base) and v is not base)


CONVOLUTIONS = (nn_conv._ConvNd,)
POOLINGS = (nn_pooling._MaxPoolNd, nn_pooling._AvgPoolNd, nn_pooling._AdaptiveAvgPoolNd,
            nn_pooling._AdaptiveMaxPoolNd, nn_pooling._LPPoolNd)
ACTIVATIONS = _classes_of(nn_activation, nn.Module)
SHOWN_KINDS = CONVOLUTIONS + POOLINGS + ACTIVATIONS

COLS = 16  # channels per row
TILE_IN = 0.5  # inches per channel tile, whatever its resolution
MARGIN = 0.35  # left and right, inches
TITLE_IN = 0.34  # a panel's title line


@dataclass(frozen=True)
class Panel:
    """One panel of the picture: what it shows and how many channels or units."""

    name: str  # "input", "templates", a module path, "logits" or "probabilities"
    kind: str  # module class name, or the panel name for the fixed panels
    shape: tuple[int, ...]  # per image
    style: str  # "image", "maps" or "bars"
    shown: int  # channels (maps) or units (bars) drawn
    total: int  # channels or units the layer has


def plan(activations: list[Activation], max_channels: int = 64,
         max_units: int = 1024) -> list[Panel]:
    """The layer panels for captured activations: maps for (C, H, W) outputs larger than 1x1,
    bars for vectors."""
    panels = []
    for act in activations:
        shape = tuple(act.output.shape[1:])
        if len(shape) == 3 and shape[1] * shape[2] > 1:
            panels.append(Panel(act.name, act.kind, shape, "maps", min(shape[0], max_channels),
                                shape[0]))
        else:
            units = int(np.prod(shape)) if shape else 1
            panels.append(Panel(act.name, act.kind, shape, "bars", min(units, max_units), units))
    return panels


def first_layer_templates(model: nn.Module, pixels: int = 28 * 28) -> nn.Linear | None:
    """The first Linear layer when a model starts with one on the raw pixels (an MLP)."""
    for module in model.modules():
        if isinstance(module, nn_conv._ConvNd):
            return None
        if isinstance(module, nn.Linear):
            return module if module.in_features == pixels else None
    return None


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape))


def _some(shown: int, total: int, what: str) -> str:
    return f"{total} {what}" if shown == total else f"first {shown} of {total} {what}"


@styled
def feature_map_figure(model: nn.Module, image: torch.Tensor | np.ndarray,
                       normalizer: Normalizer | None = None,
                       classes: tuple[str, ...] | list[str] | None = None,
                       label: int | None = None, max_channels: int = 64,
                       title: str | None = None) -> Figure:
    """The feature-map picture of one uint8 (28, 28) image (white digit on black, as in
    MNIST) through any model. `normalizer` defaults to MNIST's mean and std; `label`, when
    known, marks the true class. The returned figure has a `panels` list of `Panel`s."""
    image = (image.detach().cpu() if isinstance(image, torch.Tensor)
             else torch.from_numpy(np.ascontiguousarray(image)))
    if image.dtype != torch.uint8 or image.dim() != 2:
        raise MnistlabError(f"feature maps need a uint8 (H, W) image, got {image.dtype} "
                            f"{tuple(image.shape)}")
    normalizer = normalizer or MNIST_NORMALIZER
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = normalizer(image[None]).to(device)
    activations, logits = capture_activations(model, x, SHOWN_KINDS)
    logits = logits.reshape(-1)
    classes = list(classes or [str(i) for i in range(len(logits))])
    if len(classes) != len(logits):
        classes = [str(i) for i in range(len(logits))]
    probs = torch.softmax(logits, 0)
    predicted = int(probs.argmax())

    stack = _Stack()
    panels = [Panel("input", "input", (1, *image.shape), "image", 1, 1)]
    verdict = f"predicted {classes[predicted]} ({100 * float(probs[predicted]):.1f}%)"
    if label is not None:
        verdict += f", true {classes[label]}"
    stack.add(1.55, lambda fig, top: _draw_input(fig, top, image, verdict))
    templates = first_layer_templates(model, image.numel())
    if templates is not None:
        weights = templates.weight.detach().float().cpu()
        shown = min(len(weights), max_channels)
        panels.append(Panel("templates", "Linear", tuple(weights.shape), "maps", shown,
                            len(weights)))
        stack.add_maps(_first_linear_name(model, templates) + " weights as 28×28 templates "
                       f"({_some(shown, len(weights), 'units')}; red +, blue −)",
                       weights[:shown].reshape(shown, *image.shape), signed_per_tile=True,
                       label="templates")
    layer_panels = plan(activations, max_channels)
    for panel, act in zip(layer_panels, activations, strict=True):
        heading = f"{panel.name} · {panel.kind} · {_shape(panel.shape)}"
        out = act.output[0]
        if panel.style == "maps":
            stack.add_maps(f"{heading} ({_some(panel.shown, panel.total, 'channels')})",
                           out[: panel.shown], label=panel.name)
        else:
            values = out.reshape(-1)[: panel.shown]
            what = _some(panel.shown, panel.total, "units")
            stack.add(1.5, lambda fig, top, v=values, h=f"{heading} ({what})", n=panel.name:
                      _draw_bars(fig, top, v, h, n))
    panels += layer_panels
    panels += [Panel("logits", "logits", (len(logits),), "bars", len(logits), len(logits)),
               Panel("probabilities", "softmax", (len(logits),), "bars", len(logits),
                     len(logits))]
    stack.add(2.2, lambda fig, top: _draw_outputs(fig, top, logits, probs, classes, predicted,
                                                  label))
    fig = stack.render(title or f"what {type(model).__name__} sees")
    fig.panels = panels
    return fig


def _first_linear_name(model: nn.Module, layer: nn.Module) -> str:
    return next((f"{name} (Linear)" for name, m in model.named_modules() if m is layer),
                "Linear")


class _Stack:
    """Panels of fixed height (inches) stacked top to bottom on a figure of fixed width."""

    def __init__(self) -> None:
        self.items: list[tuple[float, Callable[[Figure, float], None]]] = []

    def add(self, height: float, draw: Callable[[Figure, float], None]) -> None:
        self.items.append((height, draw))

    def add_maps(self, heading: str, maps: torch.Tensor, signed_per_tile: bool = False,
                 label: str = "") -> None:
        maps = maps.float()
        if signed_per_tile:  # each template on its own symmetric scale
            scale = maps.abs().amax(dim=(1, 2), keepdim=True).clamp(min=1e-12)
            maps, lo, hi, cmap = maps / scale, -1.0, 1.0, "RdBu_r"
        else:  # one scale per layer: a dim channel is dim for a reason
            lo, hi = float(maps.min()), float(maps.max())
            if lo < 0:
                hi = max(abs(lo), abs(hi), 1e-12)
                lo, cmap = -hi, "RdBu_r"
            else:
                lo, hi, cmap = 0.0, max(hi, 1e-12), "viridis"
            heading += f"; colour scale {lo:.3g} … {hi:.3g}"
        mosaic = make_mosaic(maps, COLS, gap=(3, 3), min_tile=24)
        width, height = mosaic_inches(mosaic, TILE_IN)

        def draw(fig: Figure, top: float) -> None:
            fig.text(MARGIN / WIDTH, 1 - (top + 0.06) / fig.get_figheight(), heading,
                     ha="left", va="top", fontsize=9, fontweight="bold")
            ax = axes_at(fig, MARGIN, top + TITLE_IN, width, height)
            draw_mosaic(ax, mosaic, cmap=cmap, vmin=lo, vmax=hi)
            ax.set_label(label)

        self.add(TITLE_IN + height + 0.12, draw)

    def render(self, title: str) -> Figure:
        head = 0.5
        total = head + sum(h for h, _ in self.items) + 0.15
        fig = new_figure(WIDTH, total)
        fig.text(MARGIN / WIDTH, 1 - 0.15 / total, title, ha="left", va="top", fontsize=11,
                 fontweight="bold")
        top = head
        for height, draw in self.items:
            draw(fig, top)
            top += height
        return fig


def _draw_input(fig: Figure, top: float, image: torch.Tensor, verdict: str) -> None:
    ax = axes_at(fig, MARGIN, top + 0.05, 1.35, 1.35)
    ax.imshow(image.numpy(), cmap="gray", vmin=0, vmax=255)
    bare(ax)
    ax.set_label("input")
    fig.text((MARGIN + 1.6) / WIDTH, 1 - (top + 0.1) / fig.get_figheight(),
             f"input · {_shape((1, *image.shape))}", ha="left", va="top", fontsize=9,
             fontweight="bold")
    fig.text((MARGIN + 1.6) / WIDTH, 1 - (top + 0.4) / fig.get_figheight(), verdict,
             ha="left", va="top", fontsize=10)


def _draw_bars(fig: Figure, top: float, values: torch.Tensor, heading: str, label: str) -> None:
    fig.text(MARGIN / WIDTH, 1 - (top + 0.06) / fig.get_figheight(), heading, ha="left",
             va="top", fontsize=9, fontweight="bold")
    ax = axes_at(fig, MARGIN + 0.3, top + TITLE_IN, WIDTH - 2 * MARGIN - 0.3, 0.75)
    v = values.numpy()
    ax.bar(np.arange(len(v)), v, width=1.0 if len(v) > 40 else 0.8,
           color=np.where(v >= 0, "#3b75af", "#c44e52"))
    ax.set_xlim(-0.6, len(v) - 0.4)
    ax.grid(axis="x", visible=False)
    ax.tick_params(labelsize=7)
    ax.set_label(label)


def _draw_outputs(fig: Figure, top: float, logits: torch.Tensor, probs: torch.Tensor,
                  classes: list[str], predicted: int, label: int | None) -> None:
    colours = [NEUTRAL] * len(classes)
    colours[predicted] = GOOD if label is None or label == predicted else BAD
    if label is not None and label != predicted:
        colours[label] = GOOD
    x = np.arange(len(classes))
    width = (WIDTH - 2 * MARGIN - 1.2) / 2
    for i, (values, name) in enumerate(((logits, "logits"), (probs, "probabilities"))):
        left = MARGIN + 0.4 + i * (width + 0.8)
        ax: Axes = axes_at(fig, left, top + TITLE_IN, width, 1.35)
        fig.text(left / WIDTH, 1 - (top + 0.06) / fig.get_figheight(),
                 "logits" if i == 0 else "softmax probabilities", ha="left", va="top",
                 fontsize=9, fontweight="bold")
        v = values.numpy()
        ax.bar(x, v, color=colours, width=0.7)
        ax.set_xticks(x, labels=classes, rotation=0 if max(map(len, classes)) < 3 else 45,
                      ha="center" if max(map(len, classes)) < 3 else "right")
        ax.grid(axis="x", visible=False)
        ax.set_label(name)
        if i == 0:
            ax.axhline(0, color="#555", lw=0.6)
        else:
            ax.set_ylim(0, 1.15)
            ax.text(predicted, v[predicted] + 0.03, f"{100 * v[predicted]:.1f}%",
                    ha="center", va="bottom", fontsize=8, fontweight="bold")
        for tick_index, tick in enumerate(ax.get_xticklabels()):
            if tick_index == predicted:
                tick.set_fontweight("bold")
            if label is not None and tick_index == label:
                tick.set_color(GOOD)
