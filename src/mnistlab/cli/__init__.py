"""The `mnistlab` command: a thin layer over the library.

Each sub-command lives in its own module with `register(subparsers)`, which adds its
parser and sets `func`. Errors that are the user's (MnistlabError) become one line on
stderr and a non-zero exit status; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from mnistlab import __version__
from mnistlab.errors import MnistlabError

# Module names under mnistlab.cli, in the order `mnistlab --help` lists them.
COMMANDS = ["train", "evaluate", "predict", "models", "data", "plot", "compare", "featuremaps",
            "mistakes", "report", "doctor", "serve", "export", "convert"]


class Parser(argparse.ArgumentParser):
    """Usage errors look like every other error: one line, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"mnistlab: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="mnistlab",
        description="Train, inspect and serve handwritten-digit classifiers (MNIST and siblings).")
    parser.add_argument("--version", action="version", version=f"mnistlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"mnistlab.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MnistlabError as e:
        print(f"mnistlab: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("mnistlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `mnistlab models | head`
        return 0


def run() -> None:
    sys.exit(main())
