"""`mnistlab predict`: classify image files (placeholder until mnistlab.predict lands)."""

from __future__ import annotations

import argparse

from mnistlab.cli.common import add_device, add_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify your own digit images or photos")
    p.set_defaults(func=run)
    p.add_argument("checkpoint", metavar="CHECKPOINT_OR_RUN")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    add_device(p)
    add_json(p)


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError
