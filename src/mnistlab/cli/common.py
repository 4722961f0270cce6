"""Options shared by several commands, so that they are spelled the same everywhere."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from mnistlab.data.registry import DATASETS
from mnistlab.device import DEVICE_CHOICES


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" only where X tells the reader something: not when the help
    already says its default in words, nor for None (the recipe or the checkpoint decides),
    empty lists, or the True/False of an on/off flag ("--no-download (default: True)" reads
    as if downloads were off)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = action.help or ""
        default = action.default
        if ("default" in help_text or default is None or default is argparse.SUPPRESS
                or isinstance(default, bool) or default in ([], ())):
            return help_text
        return super()._get_help_string(action)


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", metavar="DEVICE",
                        help=f"{' | '.join(DEVICE_CHOICES)} | cuda:N (default: auto = CUDA, "
                             "then Apple MPS, then CPU)")


def to_stderr(line: str) -> None:
    """A status line (the threads chosen) on stderr: stdout carries the command's results or
    its JSON."""
    print(line, file=sys.stderr)


def add_threads(parser: argparse.ArgumentParser, work: str) -> None:
    """`--threads N` of the inference-style commands (eval, predict, doctor); `work`: what
    the threads do, e.g. "evaluates". Checked (>= 1) by threads.check_forced when it runs."""
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help=f"CPU threads for torch, fixed (default: 1 or all cores, whichever "
                             f"{work} faster, measured on a real batch when the work is long "
                             "enough to repay measuring, else 1; with --device cuda or mps "
                             "PyTorch's default)")


def add_data(parser: argparse.ArgumentParser, dataset: bool = True) -> None:
    if dataset:
        parser.add_argument("--dataset", choices=list(DATASETS), default=None,
                            help="data set (default: mnist, or the checkpoint's)")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="folder with the IDX files (else $MNISTLAB_DATA, the user cache, "
                             "system folders, then a download)")
    parser.add_argument("--no-download", dest="download", action="store_false",
                        help="fail instead of downloading missing files (by default they "
                             "are downloaded)")


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def add_include_dry_runs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--include-dry-runs", action="store_true",
                        help="also show runs made with train --dry-run (left out by default: "
                             "one batch each way, their figures mean nothing)")


def print_notes(notes: list[str]) -> None:
    """Notes about what a command left out go to stderr: stdout may be JSON or CSV."""
    for note in notes:
        print(note if note.startswith("warning:") else f"note: {note}", file=sys.stderr)


def add_output(parser: argparse.ArgumentParser, default: str) -> None:
    parser.set_defaults(output_name=default)
    parser.add_argument("-o", "--output", default=default,
                        help=f"image file to write; .png, .svg or .pdf; a folder: {default} "
                             f"in it (default: {default})")
    parser.add_argument("--format", choices=["png", "svg", "pdf"], default=None,
                        help="image format when the file name does not say")
    parser.add_argument("--dpi", type=int, default=150,
                        help="PNG resolution in dots per inch (default: 150)")


def output_file(output: str, default: str) -> str:
    """Where `-o OUTPUT` writes: OUTPUT itself, or, when it is a folder (an existing one, or
    a name ending in '/'), the command's usual file name inside it. The suffix is left off
    when --format should choose it, so `-o out --format svg` gives out/curves.svg."""
    path = Path(output)
    if path.is_dir() or output.endswith(("/", os.sep)):
        return str(path / Path(default).stem)
    return output


def output_folder(folder: str, option: str) -> Path:
    """A folder an option writes files into: it may not exist yet (it is made when the
    first file is written), but neither it nor a folder above it may be a file. Checked
    before any work is done, so a wrong name costs nothing."""
    _check_folders(Path(folder), folder, option)
    return Path(folder)


def output_target(file: str, option: str = "-o") -> Path:
    """A file an option writes: not a folder, and no file where a folder above it should
    be (checked before any work; the folders are made when the file is written)."""
    from mnistlab.errors import MnistlabError

    path = Path(file)
    if path.is_dir():
        raise MnistlabError(f"{option} {file}: is a folder; give a file name")
    _check_folders(path.parent, file, option)
    return path


def _check_folders(path: Path, given: str, option: str) -> None:
    """`path` and the folders above it, up to the first that exists, can hold folders."""
    from mnistlab.errors import MnistlabError

    for above in (path, *path.parents):
        if above.is_dir():
            if not os.access(above, os.W_OK | os.X_OK):
                raise MnistlabError(f"{option} {given}: cannot write in {above} "
                                    "(permission denied)")
            return
        if above.exists():
            where = ("is a file" if above == Path(given)
                     else f"is inside {above}, which is a file")
            raise MnistlabError(f"{option} {given}: {where}, not a folder")


def save(fig, args: argparse.Namespace, output: str | None = None):
    """Write a figure as the shared -o/--format/--dpi options say (into the folder, with
    the command's usual file name, when -o names a folder)."""
    from mnistlab.errors import MnistlabError
    from mnistlab.viz.style import save_figure

    if not 20 <= args.dpi <= 600:
        raise MnistlabError(f"--dpi must be between 20 and 600, got {args.dpi}")
    if output is None:
        output = output_file(args.output, getattr(args, "output_name", "figure.png"))
    return save_figure(fig, output, args.format, args.dpi)
