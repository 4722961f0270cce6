"""`mnistlab report RUN`: one self-contained HTML page about a run (RUN/report.html)."""

from __future__ import annotations

import argparse

from mnistlab.cli.common import add_device


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write RUN/report.html: curves, metrics, mistakes, maps",
                       description="One self-contained HTML file (pictures inlined, no network, "
                                   "no JavaScript): configuration, model summary, curves, final "
                                   "metrics, per-class accuracy, confusion matrix, the most "
                                   "confident mistakes and the feature maps of a test digit.")
    p.set_defaults(func=run)
    p.add_argument("run", metavar="RUN", help="run directory")
    add_device(p)


def run(args: argparse.Namespace) -> int:
    from mnistlab.device import resolve_device
    from mnistlab.viz.report import write_report

    print(f"wrote {write_report(args.run, device=resolve_device(args.device))}")
    return 0
