"""`mnistlab plot RUN...`: training curves of one run, or of several overlaid for comparison."""

from __future__ import annotations

import argparse


def add_output(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("-o", "--output", default=default,
                        help=f"image file to write; .png, .svg or .pdf (default: {default})")
    parser.add_argument("--format", choices=["png", "svg", "pdf"], default=None,
                        help="image format when the file name does not say")
    parser.add_argument("--dpi", type=int, default=150, help="PNG resolution (dots per inch)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="plot training curves of one or more runs (overlaid)",
                       description="Training loss per logged step (raw and smoothed), accuracy "
                                   "and loss per epoch (train, validation, test when tracked), "
                                   "and the learning rate. Several runs overlay in one figure.")
    p.set_defaults(func=run)
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    add_output(p, "curves.png")
    p.add_argument("--title", default=None, help="figure title")


def save(fig, args: argparse.Namespace, output: str | None = None):
    """Write a figure as the shared -o/--format/--dpi options say."""
    from mnistlab.errors import MnistlabError
    from mnistlab.viz.style import save_figure

    if not 20 <= args.dpi <= 600:
        raise MnistlabError(f"--dpi must be between 20 and 600, got {args.dpi}")
    return save_figure(fig, output or args.output, args.format, args.dpi)


def run(args: argparse.Namespace) -> int:
    from mnistlab.viz.curves import plot_runs

    print(f"wrote {save(plot_runs(args.runs, args.title), args)}")
    return 0
