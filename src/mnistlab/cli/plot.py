"""`mnistlab plot RUN...`: training curves of one run, or of several overlaid for comparison."""

from __future__ import annotations

import argparse

from mnistlab.cli.common import add_output, save


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="plot training curves of one or more runs (overlaid)",
                       description="Training loss per logged step (raw and smoothed), accuracy "
                                   "and loss per epoch (train, validation, test when tracked), "
                                   "and the learning rate. Several runs overlay in one figure.")
    p.set_defaults(func=run)
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    add_output(p, "curves.png")
    p.add_argument("--title", default=None, help="figure title")


def run(args: argparse.Namespace) -> int:
    from mnistlab.viz.curves import plot_runs

    print(f"wrote {save(plot_runs(args.runs, args.title), args)}")
    return 0
