"""Training curves of one or more runs: loss per step, accuracy and loss per epoch, learning rate.

Everything is read from what a run directory holds (metrics.csv, config.json, summary.json),
so a run can be plotted while it trains, after it stopped, or on another machine.
"""

from __future__ import annotations

import math
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
    def dataset(self) -> str:
        return str(self.summary.get("dataset") or self.config.get("dataset") or "?")

    @property
    def backend(self) -> str:
        """"torch" or "numpy" (a NumPy run's model is the equivalent PyTorch "mlp")."""
        return str(self.summary.get("backend") or self.config.get("backend") or "torch")

    @property
    def dry_run(self) -> bool:
        """A `--dry-run` (one batch each way): its numbers mean nothing."""
        return bool(self.summary.get("dry_run") or self.config.get("dry_run"))

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
    def validated(self) -> bool:
        """Whether the run held out a validation split: its summary has a best validation
        accuracy, or its epochs logged one (--val-size 0 runs keep their last epoch)."""
        return (self.summary.get("best_val_accuracy") is not None
                or len(self.column(self.epochs, "val_acc")[1]) > 0)

    @property
    def best_epoch(self) -> int | None:
        """The epoch selected on validation accuracy (the summary's, else the metrics')."""
        if self.summary.get("best_epoch"):
            return int(self.summary["best_epoch"])
        x, y = self.column(self.epochs, "val_acc")
        return int(x[int(np.argmax(y))]) if len(y) else None


class NothingLogged(MnistlabError):
    """A run directory that has not logged a row yet (e.g. interrupted at batch 1)."""


def load_run(path: str | os.PathLike[str]) -> RunRecord:
    """Read a run directory; a one-line MnistlabError when it is not one or has no metrics."""
    path = Path(path)
    if not path.is_dir():
        what = "is a file, not a run directory" if path.exists() else "no such run directory"
        raise MnistlabError(f"{path}: {what}")
    metrics = path / "metrics.csv"
    members = [] if metrics.is_file() else sorted((path / "members").glob("member-*"))
    if members:  # train --members: the curves are the members'
        raise MnistlabError(f"{path}: an ensemble run (--members) logs no curves of its own; "
                            f"its members do: {' '.join(str(m) for m in members)}")
    if not metrics.is_file() and (path / "config.json").is_file():
        raise NothingLogged(f"{path}: no metrics.csv yet (nothing logged)")
    if not metrics.is_file():
        raise MnistlabError(f"{path}: no metrics.csv (not a run directory, or nothing logged "
                            "yet)")
    rows = read_metrics(metrics)
    if not rows:
        raise NothingLogged(f"{metrics}: no rows logged yet")
    config = read_json(path / "config.json") if (path / "config.json").is_file() else {}
    summary = read_json(path / "summary.json") if (path / "summary.json").is_file() else {}
    return RunRecord(path, known_types(config), known_types(summary),
                     [r for r in rows if r["kind"] == "step"],
                     [r for r in rows if r["kind"] == "epoch"])


# What the readers of a run expect each key of config.json and summary.json to hold.
NUMBERS = ("test_accuracy", "best_val_accuracy", "train_seconds", "wall_seconds", "parameters",
           "images_per_s", "epochs_run", "best_epoch", "test_loss", "steps", "epochs",
           "steps_per_epoch")
TEXTS = ("model", "dataset", "backend", "device", "data_dir")


def known_types(record: dict[str, Any]) -> dict[str, Any]:
    """`record` without the values of known keys that have the wrong type (a hand-edited or
    damaged file: "99%" for an accuracy, a list for a model name, NaN for a count): those
    are shown as unknown rather than breaking a table or a figure."""
    def fits(key: str, value: Any) -> bool:
        if key in NUMBERS:
            return (isinstance(value, int | float) and not isinstance(value, bool)
                    and math.isfinite(value))
        if key in TEXTS:
            return isinstance(value, str)
        if key == "dry_run":
            return isinstance(value, bool)
        if key in ("resolved", "environment"):
            return isinstance(value, dict)
        return True

    kept = {k: v for k, v in record.items() if fits(k, v)}
    if isinstance(kept.get("resolved"), dict):
        kept["resolved"] = known_types(kept["resolved"])
    return kept


def smooth(values: np.ndarray, weight: float | None = None) -> np.ndarray:
    """TensorBoard's debiased exponential moving average; the weight grows with the length."""
    if weight is None:
        weight = min(0.9, max(0.0, 1 - 8 / max(len(values), 1)))
    out, last = np.empty_like(values), 0.0
    for i, v in enumerate(values):
        last = weight * last + (1 - weight) * v
        out[i] = last / (1 - weight ** (i + 1))
    return out


def run_label(name: str, model: str, backend: str = "torch") -> str:
    """A run's name, with its model when the name alone does not say it, and the backend
    when it is not PyTorch (a NumPy run's model is "mlp" too)."""
    tags = [model] if model not in name else []
    if backend != "torch":
        tags.append(backend)
    return f"{name} ({', '.join(tags)})" if tags else name


def runs_label(runs: list[RunRecord]) -> list[str]:
    return [run_label(r.name, r.model, r.backend) + (" [dry run]" if r.dry_run else "")
            for r in runs]


def collect_runs(paths: list[str | os.PathLike[str]], include_dry_runs: bool = False
                 ) -> tuple[list[RunRecord], list[str]]:
    """Load the runs to show and say, one note each, which were left out and why: a run
    with nothing logged yet (`mnistlab compare runs/*` must not fail on a run interrupted
    at its first batch), and `--dry-run`s unless asked for. Anything that is not a run
    directory at all is still an error: that is a typing mistake, not a run in progress."""
    runs, notes, dry = [], [], []
    for path in paths:
        try:
            run = load_run(path)
        except NothingLogged:
            notes.append(f"skipped {path}: nothing logged yet (interrupted before its first "
                         "log, or still starting)")
            continue
        if run.dry_run and not include_dry_runs:
            dry.append(run.name)
            continue
        runs.append(run)
    if dry:
        notes.append(f"left out {len(dry)} dry run{'s' * (len(dry) > 1)} ({', '.join(dry)}): "
                     "one batch each way, their figures mean nothing (--include-dry-runs "
                     "to show them)")
    if not runs:
        raise MnistlabError("no runs to show: " + ("; ".join(notes) if notes else "none given"))
    return runs, notes


SPLITS = (("train", ":", "train"), ("val", "-", "validation"), ("test", "--", "test"))
# Each run also has its own marker in the learning-rate panel, where runs with the same
# schedule draw exactly the same curve: colour alone would show only the last one drawn.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h", "<", ">")
LEGEND_PT = 8.5
CHAR_IN = 0.066  # inches per character at LEGEND_PT, a safe average
PANELS_IN, GAP_IN, BOTTOM_IN = 2.35, 0.5, 0.5  # panel height, gap between rows, bottom


@styled
def curves_figure(runs: list[RunRecord], title: str | None = None) -> Figure:
    """Four panels sharing an epoch axis: training loss per logged step (raw and smoothed),
    accuracy per epoch, loss per epoch, learning rate. One colour per run; line style says
    the split; a star marks each run's best (selected) epoch.

    The keys sit in a band above the panels, never over them: the split key on one row,
    then the runs in as many columns as fit. The band's height is measured, not guessed,
    so ten runs with long names push the panels down instead of covering their titles."""
    if not runs:
        raise MnistlabError("no runs to plot")
    width = 10.0
    fig = new_figure(width, 8.0)  # the height is set once the keys are measured
    labels = runs_label(runs)
    stars = False
    for i, run in enumerate(runs):
        best = _best(run)
        if best is not None:  # the key says it: labels next to the stars would collide
            labels[i] += f" · best val {best[1]:.2f}% (epoch {best[0]})"
            stars = True
        elif run.best_epoch and not run.validated:
            labels[i] += f" · no validation split (epoch {run.best_epoch} kept)"
    colours = [PALETTE[i % len(PALETTE)] for i in range(len(runs))]
    markers = [MARKERS[i % len(MARKERS)] for i in range(len(runs))]
    used_splits = {split for run in runs for split, _, _ in SPLITS
                   if len(run.column(run.epochs, f"{split}_acc")[1])
                   or len(run.column(run.epochs, f"{split}_loss")[1])}
    split_handles = [Line2D([], [], color="#555", ls=dash, marker="o", ms=3.5, label=name)
                     for split, dash, name in SPLITS if split in used_splits]
    if stars:  # only where a star is drawn
        split_handles.append(Line2D([], [], color="#555", ls="", marker="*", ms=10,
                                    label="best epoch (validation)"))
    run_handles = [Line2D([], [], color=c, lw=2, marker=m, ms=4, label=label)
                   for c, m, label in zip(colours, markers, labels, strict=True)]
    longest = max(len(label) for label in labels) * CHAR_IN + 0.75  # + handle and gap
    ncols = max(1, min(len(runs), int((width - 0.8) // longest)))
    splits_key = fig.legend(handles=split_handles, loc="upper left", ncols=len(split_handles),
                            fontsize=LEGEND_PT, borderaxespad=0, borderpad=0)
    runs_key = fig.legend(handles=run_handles, loc="upper left", ncols=ncols,
                          fontsize=LEGEND_PT, borderaxespad=0, borderpad=0,
                          title="runs" if len(runs) > 1 else None, alignment="left",
                          title_fontproperties={"size": LEGEND_PT, "weight": "bold"})
    fig.draw_without_rendering()
    dpi = fig.dpi
    split_h = splits_key.get_window_extent().height / dpi
    runs_h = runs_key.get_window_extent().height / dpi
    top_in = 0.45  # the figure title above the keys
    header = top_in + split_h + 0.12 + runs_h + 0.45  # + the first row's panel titles
    height = header + 2 * PANELS_IN + GAP_IN + BOTTOM_IN
    fig.set_size_inches(width, height)
    splits_key.set_bbox_to_anchor((0.07, 1 - top_in / height), transform=fig.transFigure)
    runs_key.set_bbox_to_anchor((0.07, 1 - (top_in + split_h + 0.12) / height),
                                transform=fig.transFigure)
    axes = fig.subplots(2, 2, sharex=True, gridspec_kw={
        "hspace": GAP_IN / PANELS_IN, "wspace": 0.22, "left": 0.07, "right": 0.98,
        "top": 1 - header / height, "bottom": BOTTOM_IN / height})
    loss_ax, acc_ax, eloss_ax, lr_ax = axes.flat
    lr_curves = []
    for i, (run, label) in enumerate(zip(runs, runs_label(runs), strict=True)):
        colour = colours[i]
        x, y = run.column(run.steps, "train_loss")
        if len(y):
            loss_ax.plot(x, y, color=colour, alpha=0.25, lw=0.8)
            loss_ax.plot(x, smooth(y), color=colour, lw=1.6, label=label)
        for split, dash, _ in SPLITS:
            ex, acc = run.column(run.epochs, f"{split}_acc")
            if len(acc):
                acc_ax.plot(ex, 100 * acc, dash, color=colour, marker="o", ms=3.5, lw=1.4)
            ex, loss = run.column(run.epochs, f"{split}_loss")
            if len(loss):
                eloss_ax.plot(ex, loss, dash, color=colour, marker="o", ms=3.5, lw=1.4)
        _mark_best(acc_ax, run, colour)
        x, lr = run.column(run.steps or run.epochs, "lr")
        if len(lr):
            lr_curves.append((x, lr))
            # Markers at staggered places, so that identical curves still show each run.
            every = max(len(runs), len(x) // 8)
            lr_ax.plot(x, lr, color=colour, lw=1.4, marker=markers[i], ms=4.5,
                       markevery=(min(i * every // len(runs), len(x) - 1), every), label=label)
    if len(lr_curves) > 1 and all(_same_curve(lr_curves[0], c) for c in lr_curves[1:]):
        lr_ax.text(0.98, 0.95, f"same schedule for all {len(lr_curves)} runs",
                   transform=lr_ax.transAxes, ha="right", va="top", fontsize=8, color="#333")
    loss_ax.set(title="training loss per step", ylabel="loss (as trained: smoothing, extra terms)")
    acc_ax.set(title="accuracy per epoch", ylabel="accuracy")
    acc_ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.4g}%"))
    eloss_ax.set(title="loss per epoch", ylabel="loss", xlabel="epoch")
    lr_ax.set(title="learning rate", ylabel="learning rate", xlabel="epoch")
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    _zoom_accuracy(acc_ax)
    for ax in (loss_ax, eloss_ax):
        _clip_top(ax)
    names = runs_label(runs)
    fig.suptitle(title or ("training curves: " + ", ".join(names) if len(runs) < 4
                           else f"training curves of {len(runs)} runs"),
                 x=0.07, y=1 - 0.1 / height, ha="left", va="top", fontsize=11,
                 fontweight="bold")
    return fig


def _same_curve(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> bool:
    return (a[0].shape == b[0].shape and np.allclose(a[0], b[0])
            and np.allclose(a[1], b[1], rtol=1e-6, atol=0))


def _best(run: RunRecord) -> tuple[int, float] | None:
    """The selected epoch and its validation accuracy in %, when the metrics have it."""
    best = run.best_epoch
    x, y = run.column(run.epochs, "val_acc")
    if best is None or best not in x:
        return None
    return best, float(100 * y[list(x).index(best)])


def _mark_best(ax: Axes, run: RunRecord, colour: str) -> tuple[int, float] | None:
    """A star on the selected epoch's validation accuracy; returns (epoch, accuracy %)."""
    best = _best(run)
    if best is not None:
        ax.plot([best[0]], [best[1]], marker="*", ms=13, color=colour, mec="white", mew=0.8,
                zorder=5)
    return best


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


def plot_runs(paths: list[str | os.PathLike[str]], title: str | None = None,
              include_dry_runs: bool = False) -> Figure:
    """The library form of `mnistlab plot RUN...` (the notes of `collect_runs` are dropped:
    use it directly to show them)."""
    return curves_figure(collect_runs(paths, include_dry_runs)[0], title)
