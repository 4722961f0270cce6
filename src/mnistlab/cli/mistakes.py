"""`mnistlab mistakes` (placeholder: its issue is in progress)."""

from __future__ import annotations

import argparse

from mnistlab.errors import MnistlabError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mistakes", help="(not yet available)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise MnistlabError("'mnistlab mistakes' is not implemented yet")
