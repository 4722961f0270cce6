"""Training curves of one or more runs: loss per step, accuracy and loss per epoch, learning rate.

Everything is read from what a run directory holds (metrics.csv, config.json, summary.json),
so a run can be plotted while it trains, after it stopped, or on another machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from mnistlab.errors import MnistlabError
from mnistlab.train.rundir import read_json, read_metrics
from mnistlab.viz.style import PALETTE, new_figure, styled


@dataclass
class RunRecord:
    """What a run directory says about itself."""

    path: Path
    config: dict[str, Any]
    summary: dict[str, Any]  # empty while the run is training
    steps: list[dict[str, Any]] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def model(self) -> str:
        return str(self.summary.get("model") or self.config.get("model") or "?")

    @property
    def steps_per_epoch(self) -> int | None:
        return (self.config.get("resolved") or {}).get("steps_per_epoch")

    def column(self, rows: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of the rows that have `key`; x in epochs (fractional for steps)."""
        kept = [r for r in rows if r.get(key) is not None]
        if rows is self.steps and self.steps_per_epoch:
            x = [r["step"] / self.steps_per_epoch for r in kept]
        else:
            x = [r["epoch"] for r in kept]
        return np.asarray(x, dtype=float), np.asarray([r[key] for r in kept], dtype=float)

    @property
    def best_epoch(self) -> int | None:
        """The epoch selected on validation accuracy (the summary's, else the metrics')."""
        if self.summary.get("best_epoch"):
            return int(self.summary["best_epoch"])
        x, y = self.column(self.epochs, "val_acc")
        return int(x[int(np.argmax(y))]) if len(y) else None


def load_run(path: str | os.PathLike[str]) -> RunRecord:
    """Read a run directory; a one-line MnistlabError when it is not one or has no metrics."""
    path = Path(path)
    if not path.is_dir():
        what = "is a file, not a run directory" if path.exists() else "no such run directory"
        raise MnistlabError(f"{path}: {what}")
    metrics = path / "metrics.csv"
    if not metrics.is_file():
        raise MnistlabError(f"{path}: no metrics.csv (not a run directory, or nothing logged "
                            "yet)")
    rows = read_metrics(metrics)
    if not rows:
        raise MnistlabError(f"{metrics}: no rows logged yet")
    config = read_json(path / "config.json") if (path / "config.json").is_file() else {}
    summary = read_json(path / "summary.json") if (path / "summary.json").is_file() else {}
    return RunRecord(path, config, summary, [r for r in rows if r["kind"] == "step"],
                     [r for r in rows if r["kind"] == "epoch"])


def smooth(values: np.ndarray, weight: float | None = None) -> np.ndarray:
    """TensorBoard's debiased exponential moving average; the weight grows with the length."""
    if weight is None:
        weight = min(0.9, max(0.0, 1 - 8 / max(len(values), 1)))
    out, last = np.empty_like(values), 0.0
    for i, v in enumerate(values):
        last = weight * last + (1 - weight) * v
        out[i] = last / (1 - weight ** (i + 1))
    return out


def run_label(name: str, model: str) -> str:
    """A run's name, with its model when the name alone does not say it."""
    return name if model in name else f"{name} ({model})"


def runs_label(runs: list[RunRecord]) -> list[str]:
    return [run_label(r.name, r.model) for r in runs]


SPLITS = (("train", ":", "train"), ("val", "-", "validation"), ("test", "--", "test"))


@styled
def curves_figure(runs: list[RunRecord], title: str | None = None) -> Figure:
    """Four panels sharing an epoch axis: training loss per logged step (raw and smoothed),
    accuracy per epoch, loss per epoch, learning rate. One colour per run; line style says
    the split; a star marks each run's best (selected) epoch."""
    if not runs:
        raise MnistlabError("no runs to plot")
    fig = new_figure(10.0, 6.6)
    axes = fig.subplots(2, 2, sharex=True, gridspec_kw={"hspace": 0.28, "wspace": 0.22,
                                                         "left": 0.07, "right": 0.98,
                                                         "top": 0.80, "bottom": 0.08})
    loss_ax, acc_ax, eloss_ax, lr_ax = axes.flat
    labels = runs_label(runs)
    used_splits: set[str] = set()
    for i, (run, label) in enumerate(zip(runs, labels, strict=True)):
        colour = PALETTE[i % len(PALETTE)]
        x, y = run.column(run.steps, "train_loss")
        if len(y):
            loss_ax.plot(x, y, color=colour, alpha=0.25, lw=0.8)
            loss_ax.plot(x, smooth(y), color=colour, lw=1.6, label=label)
        for split, dash, _ in SPLITS:
            ex, acc = run.column(run.epochs, f"{split}_acc")
            if len(acc):
                used_splits.add(split)
                acc_ax.plot(ex, 100 * acc, dash, color=colour, marker="o", ms=3.5, lw=1.4)
            ex, loss = run.column(run.epochs, f"{split}_loss")
            if len(loss):
                eloss_ax.plot(ex, loss, dash, color=colour, marker="o", ms=3.5, lw=1.4)
        best = _mark_best(acc_ax, run, colour)
        if best is not None:  # the legend says it: labels next to the stars would collide
            labels[i] += f" · best val {best[1]:.2f}% (epoch {best[0]})"
        x, lr = run.column(run.steps or run.epochs, "lr")
        if len(lr):
            lr_ax.plot(x, lr, color=colour, lw=1.4)
    loss_ax.set(title="training loss per step", ylabel="cross-entropy")
    acc_ax.set(title="accuracy per epoch", ylabel="accuracy")
    acc_ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.4g}%"))
    eloss_ax.set(title="loss per epoch", ylabel="cross-entropy", xlabel="epoch")
    lr_ax.set(title="learning rate", ylabel="learning rate", xlabel="epoch")
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    _zoom_accuracy(acc_ax)
    for ax in (loss_ax, eloss_ax):
        _clip_top(ax)
    run_handles = [Line2D([], [], color=PALETTE[i % len(PALETTE)], lw=2, label=label)
                   for i, label in enumerate(labels)]
    split_handles = [Line2D([], [], color="#555", ls=dash, marker="o", ms=3.5, label=name)
                     for split, dash, name in SPLITS if split in used_splits]
    split_handles.append(Line2D([], [], color="#555", ls="", marker="*", ms=10,
                                label="best epoch (validation)"))
    fig.legend(handles=run_handles, loc="upper left", bbox_to_anchor=(0.06, 0.955),
               ncols=1 if len(runs) <= 3 else 2, fontsize=8.5)
    fig.legend(handles=split_handles, loc="upper right", bbox_to_anchor=(0.99, 0.955),
               ncols=2, fontsize=8.5)
    names = runs_label(runs)
    fig.suptitle(title or ("training curves: " + ", ".join(names) if len(runs) < 4
                           else f"training curves of {len(runs)} runs"),
                 x=0.07, y=0.985, ha="left", fontsize=11, fontweight="bold")
    return fig


def _mark_best(ax: Axes, run: RunRecord, colour: str) -> tuple[int, float] | None:
    """A star on the selected epoch's validation accuracy; returns (epoch, accuracy %)."""
    best = run.best_epoch
    x, y = run.column(run.epochs, "val_acc")
    if best is None or best not in x:
        return None
    value = 100 * y[list(x).index(best)]
    ax.plot([best], [value], marker="*", ms=13, color=colour, mec="white", mew=0.8, zorder=5)
    return best, value


def _zoom_accuracy(ax: Axes) -> None:
    """Accuracy lives near 100%: show the range the curves use (never above 100%)."""
    values = np.concatenate([line.get_ydata() for line in ax.get_lines()] or [np.zeros(0)])
    if len(values):
        low, high = float(values.min()), float(values.max())
        pad = max(0.1, 0.08 * (high - low))
        ax.set_ylim(max(0.0, low - pad), min(100.0, high + 2.5 * pad))


def _clip_top(ax: Axes) -> None:
    """A first-step loss of 2.3 would flatten everything after it: cap the view at a level
    that keeps the later curve readable (the spike is cut, not hidden from the data)."""
    values = np.concatenate([line.get_ydata() for line in ax.get_lines()] or [np.zeros(0)])
    if len(values) > 4:
        top = float(np.quantile(values, 0.98))
        ax.set_ylim(0, top * 1.1 if top > 0 else 1)


def plot_runs(paths: list[str | os.PathLike[str]], title: str | None = None) -> Figure:
    """The library form of `mnistlab plot RUN...`."""
    return curves_figure([load_run(p) for p in paths], title)
