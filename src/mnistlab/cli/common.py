"""Options shared by several commands, so that they are spelled the same everywhere."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mnistlab.data.registry import DATASETS
from mnistlab.device import DEVICE_CHOICES


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", metavar="DEVICE",
                        help=f"{' | '.join(DEVICE_CHOICES)} | cuda:N (default: auto = CUDA, "
                             "then Apple MPS, then CPU)")


def add_data(parser: argparse.ArgumentParser, dataset: bool = True) -> None:
    if dataset:
        parser.add_argument("--dataset", choices=list(DATASETS), default=None,
                            help="data set (default: mnist, or the checkpoint's)")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="folder with the IDX files (else $MNISTLAB_DATA, the user cache, "
                             "system folders, then a download)")
    parser.add_argument("--no-download", dest="download", action="store_false",
                        help="fail instead of downloading missing files")


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
