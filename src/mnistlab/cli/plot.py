"""`mnistlab plot RUN...`: training curves of one run, or of several overlaid for comparison."""

from __future__ import annotations

import argparse

from mnistlab.cli.common import add_include_dry_runs, add_output, print_notes, save


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="plot training curves of one or more runs (overlaid)",
                       description="Training loss per logged step (raw and smoothed), accuracy "
                                   "and loss per epoch (train, validation, test when tracked), "
                                   "and the learning rate. Several runs overlay in one figure. "
                                   "Runs with nothing logged yet are skipped, and dry runs "
                                   "left out, with a note on stderr.")
    p.set_defaults(func=run)
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    add_output(p, "curves.png")
    p.add_argument("--title", default=None, help="figure title")
    add_include_dry_runs(p)


def run(args: argparse.Namespace) -> int:
    from mnistlab.viz.curves import collect_runs, curves_figure

    runs, notes = collect_runs(args.runs, args.include_dry_runs)
    print_notes(notes)
    print(f"wrote {save(curves_figure(runs, args.title), args)}")
    return 0
