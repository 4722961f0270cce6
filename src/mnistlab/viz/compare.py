"""Runs side by side: one row per run from its config.json and summary.json, and a bar chart."""

from __future__ import annotations

import csv
import io
import os
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from mnistlab.viz.curves import RunRecord, collect_runs, run_label
from mnistlab.viz.style import PALETTE, new_figure, percent, styled

# (key, heading) in table order
COLUMNS = [("run", "run"), ("dataset", "data set"), ("model", "model"),
           ("backend", "backend"), ("parameters", "parameters"),
           ("best_val_accuracy", "best val acc"), ("test_accuracy", "test acc"),
           ("epochs", "epochs"), ("train_seconds", "train s"), ("images_per_s", "images/s")]


def compare_row(run: RunRecord) -> dict[str, Any]:
    s = run.summary
    val = s.get("best_val_accuracy")
    if val is None:  # still training: the best validation accuracy so far
        _, accs = run.column(run.epochs, "val_acc")
        val = float(accs.max()) if len(accs) else None
    return {"run": run.name, "dataset": run.dataset, "model": run.model,
            "backend": run.backend, "parameters": s.get("parameters"),
            "best_val_accuracy": val, "test_accuracy": s.get("test_accuracy"),
            "epochs": s.get("epochs_run", len(run.epochs)),
            "train_seconds": s.get("train_seconds",
                                   sum(r.get("seconds") or 0.0 for r in run.epochs)),
            "images_per_s": s.get("images_per_s"), "dry_run": run.dry_run,
            "path": str(run.path)}


def compare_rows(paths: list[str | os.PathLike[str]], include_dry_runs: bool = False
                 ) -> list[dict[str, Any]]:
    """One row per run (runs with nothing logged, and dry runs unless asked for, are left
    out: `compare_runs` also returns the notes that say so)."""
    return compare_runs(paths, include_dry_runs)[0]


def compare_runs(paths: list[str | os.PathLike[str]], include_dry_runs: bool = False
                 ) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows, and notes for the user: runs left out, and a warning when the runs are on
    different data sets (88.9% on Fashion-MNIST is not worse than 99.2% on MNIST)."""
    runs, notes = collect_runs(paths, include_dry_runs)
    rows = [compare_row(r) for r in runs]
    warning = mixed_datasets_warning(rows)
    return rows, notes + ([warning] if warning else [])


def mixed_datasets_warning(rows: list[dict[str, Any]]) -> str | None:
    datasets = sorted({r["dataset"] for r in rows})
    if len(datasets) < 2:
        return None
    return (f"warning: these runs were trained on different data sets ({', '.join(datasets)}): "
            "their accuracies are not comparable with each other")


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
    """An aligned text table; the best test accuracy is marked with '*', and a line under
    the table says so (per data set when the runs are on several)."""
    # The best of each data set: accuracies on different data sets do not compare.
    best: dict[str, float] = {}
    for r in rows:
        if r["test_accuracy"] is not None:
            best[r["dataset"]] = max(best.get(r["dataset"], 0.0), r["test_accuracy"])
    starred = [len(rows) > 1 and r["test_accuracy"] is not None
               and r["test_accuracy"] == best[r["dataset"]]
               and sum(x["dataset"] == r["dataset"] for x in rows) > 1 for r in rows]
    cells = [[_cell(k, r[k]) + ("*" if k == "test_accuracy" and star else "")
              + (" [dry run]" if k == "run" and r.get("dry_run") else "")
              for k, _ in COLUMNS] for r, star in zip(rows, starred, strict=True)]
    head = [h for _, h in COLUMNS]
    widths = [max(len(x) for x in col) for col in zip(head, *cells, strict=True)]
    left = {"run", "dataset", "model", "backend"}

    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) if k in left else v.rjust(w)
                         for (k, _), v, w in zip(COLUMNS, values, widths, strict=True)).rstrip()

    lines = [line(head), "  ".join("-" * w for w in widths), *map(line, cells)]
    if any(starred):
        lines.append("* the highest test accuracy" + (" of its data set" if len(best) > 1
                                                      else ""))
    return "\n".join(lines)


def format_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[k for k, _ in COLUMNS] + ["dry_run", "path"],
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
        "wspace": 0.12, "left": 0.02 + 0.0085 * max(len(_label(r, rows)) for r in rows),
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
            # The axis ends at 100%, the most there is; the figures go inside the bars.
            low = max(0.0, np.floor(finite.min() - max(1.0, np.ptp(finite))))
            ax.set_xlim(low, 100)
            ax.xaxis.set_major_formatter(lambda v, _: f"{v:.4g}%")
        elif len(finite):
            ax.set_xlim(0, finite.max() * 1.35)
        x0, x1 = ax.get_xlim()
        for yi, v in zip(y, values, strict=True):
            if not np.isfinite(v):
                continue
            inside = key == "test_accuracy" and (v - x0) / (x1 - x0) > 0.3
            ax.text(v, yi, fmt(v) + " " if inside else " " + fmt(v), va="center",
                    ha="right" if inside else "left", fontsize=8,
                    color="white" if inside else "black")
    mixed = mixed_datasets_warning(rows) is not None
    axes[0].set_yticks(y, labels=[_label(r, rows) for r in rows])
    axes[0].invert_yaxis()
    for ax in axes:
        ax.tick_params(axis="y", length=0)
    heading = title or "comparison of runs"
    if mixed:
        heading += " (different data sets: accuracies do not compare)"
    fig.suptitle(heading, x=0.01, y=1 - 0.1 / fig.get_figheight(),
                 ha="left", va="top", fontsize=11, fontweight="bold")
    return fig


def _label(row: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The bar's name: run, model and backend, and the data set when they differ."""
    label = run_label(row["run"], row["model"], row["backend"])
    label += " [dry run]" if row.get("dry_run") else ""
    return label + (f" · {row['dataset']}" if mixed_datasets_warning(rows) else "")
