"""The `mnistlab` command: a thin layer over the library.

Each sub-command lives in its own module with `register(subparsers)`, which adds its
parser and sets `func`. Errors that are the user's (MnistlabError) become one line on
stderr and a non-zero exit status; anything else is a bug and keeps its traceback.

Building the parser imports no torch (nor NumPy, matplotlib...): the command modules import
what they need inside `run`, so that `mnistlab --help` and usage errors answer at once
(tests/test_speed.py checks it). For the same reason the model names that `train --model`
offers are read from the zoo's source (`MODEL_NAMES`), not from the imported registry.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from mnistlab import __version__
from mnistlab.errors import MnistlabError

# Module names under mnistlab.cli, in the order `mnistlab --help` lists them.
COMMANDS = ["train", "evaluate", "predict", "models", "data", "plot", "compare", "featuremaps",
            "mistakes", "report", "doctor", "serve", "export", "convert"]


def _model_names() -> list[str]:
    """The names in `@register("name", ...)` of mnistlab/models/*.py, in the registry's
    order (that of models/__init__.py's imports), without importing torch; the imported
    registry where the sources are not at hand."""
    models = Path(__file__).resolve().parent.parent / "models"
    try:
        order = re.findall(r"\b(\w+)\b", re.search(
            r"from mnistlab\.models import ([\w, ]+)",
            (models / "__init__.py").read_text()).group(1))
        names = [name for module in order for name in re.findall(
            r'^@register\(\s*"([^"]+)"', (models / f"{module}.py").read_text(), re.M)]
    except (OSError, AttributeError):
        names = []
    if not names:
        from mnistlab.models import MODELS

        names = list(MODELS)
    return names


MODEL_NAMES: list[str] = _model_names()


class Parser(argparse.ArgumentParser):
    """Usage errors look like every other error: one line, exit status 2, and a pointer to
    the help of the command that was used (`mnistlab eval --help`, not `mnistlab --help`).
    Sub-command parsers are of this class too (argparse makes them of the parent's)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"mnistlab: error: {message} (see '{self.prog} --help')\n")

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: Any = None) -> argparse.Namespace:
        # argparse reports unknown options from the top-level parser; report them from the
        # sub-command's, whose --help lists the options it does take.
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            (self._command_parser(parsed) or self).error(
                f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def _command_parser(self, parsed: argparse.Namespace) -> argparse.ArgumentParser | None:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return action.choices.get(getattr(parsed, action.dest or "", None) or "")
        return None


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="mnistlab",
        description="Train, inspect and serve handwritten-digit classifiers (MNIST and siblings).")
    parser.add_argument("--version", action="version", version=f"mnistlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                parser_class=Parser)
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
