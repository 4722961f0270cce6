"""`mnistlab compare RUN...`: which of my models is better? A table, CSV/JSON, a bar chart."""

from __future__ import annotations

import argparse
import sys

from mnistlab.cli.common import add_include_dry_runs, add_json, print_json, print_notes


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare runs: accuracy, parameters, time (table, chart)",
                       description="One row per run: data set, model, backend, parameters, "
                                   "best validation accuracy, test accuracy, epochs, training "
                                   "seconds, images/s. Runs with nothing logged yet are "
                                   "skipped, and dry runs left out, with a note on stderr.")
    p.set_defaults(func=run)
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    add_json(p)
    p.add_argument("--csv", action="store_true", help="print CSV instead of the table")
    p.add_argument("-o", "--output", default=None,
                   help="also write a bar chart to this image file (.png, .svg, .pdf; a "
                        "folder: compare.png in it)")
    p.set_defaults(output_name="compare.png")
    p.add_argument("--format", choices=["png", "svg", "pdf"], default=None,
                   help="image format when the file name does not say")
    p.add_argument("--dpi", type=int, default=150,
                   help="PNG resolution in dots per inch (default: 150)")
    add_include_dry_runs(p)
    p.add_argument("--sort", choices=["none", "test", "val", "time", "params"], default="none",
                   help="order of the rows (default: as given)")


SORT_KEYS = {"test": ("test_accuracy", True), "val": ("best_val_accuracy", True),
             "time": ("train_seconds", False), "params": ("parameters", False)}


def run(args: argparse.Namespace) -> int:
    from mnistlab.viz.compare import compare_figure, compare_runs, format_csv, format_table

    rows, notes = compare_runs(args.runs, args.include_dry_runs)
    print_notes(notes)
    if args.sort != "none":
        key, descending = SORT_KEYS[args.sort]
        present = [r for r in rows if r[key] is not None]
        rows = sorted(present, key=lambda r: r[key], reverse=descending) + [
            r for r in rows if r[key] is None]
    if args.json:
        print_json(rows)
    elif args.csv:
        sys.stdout.write(format_csv(rows))
    else:
        print(format_table(rows))
    if args.output:
        from mnistlab.cli.common import save

        path = save(compare_figure(rows), args)
        print(f"wrote {path}", file=sys.stderr if (args.json or args.csv) else sys.stdout)
    return 0
