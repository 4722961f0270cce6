"""`mnistlab serve` (placeholder: its issue is in progress)."""

from __future__ import annotations

import argparse

from mnistlab.errors import MnistlabError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="(not yet available)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise MnistlabError("'mnistlab serve' is not implemented yet")
