"""One look for every picture, and one way to write them.

Figures are built with `matplotlib.figure.Figure` directly, not pyplot: no global figure
registry, no GUI backend, nothing left open. Sizes are set in inches at a fixed width, so
that fonts come out the same size in every picture and in the HTML report.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ParamSpec, TypeVar

import matplotlib
from matplotlib.figure import Figure

from mnistlab.atomic import write_bytes
from mnistlab.errors import MnistlabError

WIDTH = 10.0  # inches: every full-width picture
DPI = 150  # PNG resolution; the report shows images at 100 px per inch, so they stay sharp
FORMATS = ("png", "svg", "pdf")

# Colours: matplotlib's tab10, so that runs keep their colour from one picture to the next.
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]
GOOD, BAD, NEUTRAL = "#2ca02c", "#d62728", "#9aa5b1"

RC = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e3e6ea",
    "grid.linewidth": 0.8,
    "axes.axisbelow": True,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "legend.fontsize": 8,
    "legend.frameon": False,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "svg.fonttype": "none",  # text stays text in SVG: searchable, small
    "image.interpolation": "nearest",  # pixels are data: never blur them
}

P = ParamSpec("P")
R = TypeVar("R")


@contextlib.contextmanager
def style() -> Iterator[None]:
    with matplotlib.rc_context(RC):
        yield


def styled(fn: Callable[P, R]) -> Callable[P, R]:
    """Build a figure under the house style (rcParams are read when artists are created)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with style():
            return fn(*args, **kwargs)

    return wrapper


def new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=100)


def image_format(output: str | os.PathLike[str], fmt: str | None = None) -> tuple[Path, str]:
    """The file to write and its format: `fmt` if given (adding the suffix when there is none),
    else the file's suffix; PNG when neither says."""
    path = Path(output)
    suffix = path.suffix.lower().lstrip(".")
    if fmt is not None:
        fmt = fmt.lower()
        if fmt not in FORMATS:
            raise MnistlabError(f"--format {fmt}: unsupported (use {', '.join(FORMATS)})")
        return (path if suffix else path.with_suffix(f".{fmt}")), fmt
    if not suffix:
        return path.with_suffix(".png"), "png"
    if suffix not in FORMATS:
        raise MnistlabError(f"{path}: unsupported image format '.{suffix}' "
                            f"(use .{', .'.join(FORMATS)}, or --format)")
    return path, suffix


def figure_bytes(fig: Figure, fmt: str = "png", dpi: int = DPI) -> bytes:
    buf = io.BytesIO()
    with style():
        fig.savefig(buf, format=fmt, dpi=dpi, metadata=_metadata(fmt))
    return buf.getvalue()


def save_figure(fig: Figure, output: str | os.PathLike[str], fmt: str | None = None,
                dpi: int = DPI) -> Path:
    """Write `fig` atomically as PNG, SVG or PDF; return the path written."""
    path, fmt = image_format(output, fmt)
    data = figure_bytes(fig, fmt, dpi)
    try:
        write_bytes(path, data)
    except OSError as e:  # an unwritable folder, a file where a folder should be, a full disk
        raise MnistlabError(f"{path}: cannot write ({e.strerror or e})") from None
    return path


def _metadata(fmt: str) -> dict[str, str | None]:
    # No timestamps or version strings: the same run gives the same file.
    if fmt == "png":
        return {"Software": None}
    if fmt == "svg":
        return {"Date": None, "Creator": None}
    return {"CreationDate": None, "Creator": None, "Producer": None}


def percent(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}%"


def axes_at(fig: Figure, left: float, top: float, width: float, height: float):
    """Add axes placed in inches, `top` measured down from the figure's top edge: pictures
    are stacked panel by panel, so every panel keeps its size whatever else is in the figure."""
    fw, fh = fig.get_size_inches()
    return fig.add_axes((left / fw, 1 - (top + height) / fh, width / fw, height / fh))
