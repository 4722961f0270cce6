"""Runs side by side: one row per run from its config.json and summary.json, and a bar chart."""

from __future__ import annotations

import csv
import io
import os
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from mnistlab.viz.curves import RunRecord, load_run, run_label
from mnistlab.viz.style import PALETTE, new_figure, percent, styled

# (key, heading) in table order
COLUMNS = [("run", "run"), ("model", "model"), ("parameters", "parameters"),
           ("best_val_accuracy", "best val acc"), ("test_accuracy", "test acc"),
           ("epochs", "epochs"), ("train_seconds", "train s"), ("images_per_s", "images/s")]


def compare_row(run: RunRecord) -> dict[str, Any]:
    s = run.summary
    val = s.get("best_val_accuracy")
    if val is None:  # still training: the best validation accuracy so far
        _, accs = run.column(run.epochs, "val_acc")
        val = float(accs.max()) if len(accs) else None
    return {"run": run.name, "model": run.model, "parameters": s.get("parameters"),
            "best_val_accuracy": val, "test_accuracy": s.get("test_accuracy"),
            "epochs": s.get("epochs_run", len(run.epochs)),
            "train_seconds": s.get("train_seconds",
                                   sum(r.get("seconds") or 0.0 for r in run.epochs)),
            "images_per_s": s.get("images_per_s"), "path": str(run.path)}


def compare_rows(paths: list[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    return [compare_row(load_run(p)) for p in paths]


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "–"
    if key.endswith("accuracy"):
        return percent(value)
    if key == "train_seconds":
        return f"{value:,.1f}"
    if isinstance(value, int | float) and key in ("parameters", "images_per_s"):
        return f"{value:,.0f}"
    return str(value)


def format_table(rows: list[dict[str, Any]]) -> str:
    """An aligned text table; the best test accuracy is marked with '*'."""
    tests = [r["test_accuracy"] for r in rows if r["test_accuracy"] is not None]
    best = max(tests) if tests else None
    cells = [[_cell(k, r[k]) + ("*" if k == "test_accuracy" and best is not None
                                and r[k] == best and len(rows) > 1 else "")
              for k, _ in COLUMNS] for r in rows]
    head = [h for _, h in COLUMNS]
    widths = [max(len(x) for x in col) for col in zip(head, *cells, strict=True)]
    left = {"run", "model"}

    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) if k in left else v.rjust(w)
                         for (k, _), v, w in zip(COLUMNS, values, widths, strict=True)).rstrip()

    return "\n".join([line(head), "  ".join("-" * w for w in widths), *map(line, cells)])


def format_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[k for k, _ in COLUMNS] + ["path"],
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


@styled
def compare_figure(rows: list[dict[str, Any]], title: str | None = None) -> Figure:
    """Three bar panels, one bar per run: test accuracy, parameters (log scale), training time."""
    n = len(rows)
    fig = new_figure(10.0, 1.4 + 0.38 * n)
    axes = fig.subplots(1, 3, sharey=True, gridspec_kw={
        "wspace": 0.12, "left": 0.02 + 0.0085 * max(len(r["run"]) for r in rows),
        "right": 0.97, "top": 1 - 0.65 / fig.get_figheight(),
        "bottom": 0.5 / fig.get_figheight()})
    y = np.arange(n)
    colours = [PALETTE[i % len(PALETTE)] for i in range(n)]
    panels = [("test_accuracy", "test accuracy", lambda v: 100 * v, lambda v: f"{v:.2f}%"),
              ("parameters", "parameters", float, lambda v: f"{v:,.0f}"),
              ("train_seconds", "training time (s)", float, lambda v: f"{v:,.1f} s")]
    for ax, (key, name, scale, fmt) in zip(axes, panels, strict=True):
        values = np.array([np.nan if r[key] is None else scale(r[key]) for r in rows])
        ax.barh(y, np.nan_to_num(values), color=colours, height=0.6)
        ax.set_title(name, loc="left")
        ax.grid(axis="y", visible=False)
        finite = values[np.isfinite(values)]
        if key == "parameters" and len(finite) and finite.min() > 0:
            ax.set_xscale("log")
            ax.set_xlim(finite.min() / 3, finite.max() * 12)
        elif key == "test_accuracy" and len(finite):
            # Accuracies sit close to 100%: start the axis where the differences show,
            # and say so in the tick labels rather than hiding it.
            low = max(0.0, np.floor(finite.min() - max(1.0, np.ptp(finite))))
            ax.set_xlim(low, 100 + (100 - low) * 0.25)
            ax.xaxis.set_major_formatter(lambda v, _: f"{v:.4g}%" if v <= 100 else "")
        elif len(finite):
            ax.set_xlim(0, finite.max() * 1.35)
        for yi, v in zip(y, values, strict=True):
            if np.isfinite(v):
                ax.text(v, yi, " " + fmt(v), va="center", ha="left", fontsize=8)
    axes[0].set_yticks(y, labels=[run_label(r["run"], r["model"]) for r in rows])
    axes[0].invert_yaxis()
    for ax in axes:
        ax.tick_params(axis="y", length=0)
    fig.suptitle(title or "comparison of runs", x=0.01, y=1 - 0.1 / fig.get_figheight(),
                 ha="left", va="top", fontsize=11, fontweight="bold")
    return fig

