"""Saving a NumPy network to `.npz` with its architecture inside, and loading it back.

The file is an ordinary NumPy `.npz` (readable by `np.load` alone) holding:
    format   "mnistlab-numpy-mlp"          tells our checkpoints from any other .npz
    version  1                             format version, bumped on incompatible changes
    config   JSON: sizes, activation, init, dtype   (MLP.config())
    extra    JSON: whatever the caller adds (epochs, accuracy, normalisation mean/std...)
    W0, b0, W1, b1, ...                    the weights, W stored (n_in, n_out)
No pickles: loading never runs code from the file.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.atomic import atomic_open
from mnistlab.errors import MnistlabError
from mnistlab.scratch.network import MLP

FORMAT = "mnistlab-numpy-mlp"
VERSION = 1


class CheckpointError(MnistlabError, ValueError):
    """A file that is not a valid mnistlab NumPy checkpoint; the one-line message names it."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint's extra")


def save_npz(path: str | os.PathLike[str], net: MLP, extra: dict[str, Any] | None = None) -> None:
    """Write `net` (and JSON-able `extra`) to `path` atomically: readers never see half a file."""
    arrays = {
        "format": np.array(FORMAT),
        "version": np.array(VERSION),
        "config": np.array(json.dumps(net.config())),
        "extra": np.array(json.dumps(extra or {}, default=_jsonable)),
        **net.to_arrays(),
    }
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)  # a file object, so NumPy does not append ".npz" to the name


def _fail(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"{path}: not a mnistlab NumPy checkpoint ({why})")


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    with path.open("rb") as f:
        head = f.read(6)
    if not head:
        raise _fail(path, "empty file")
    if head.startswith(b"\x93NUMPY"):
        raise _fail(path, "a single .npy array, not an .npz archive")
    if not head.startswith(b"PK"):  # every .npz is a zip archive
        raise _fail(path, "not an .npz (zip) archive")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise _fail(path, f"damaged .npz archive: {reason}") from None


def load_npz(path: str | os.PathLike[str]) -> tuple[MLP, dict[str, Any]]:
    """Rebuild the network saved by `save_npz`; returns (net, extra).

    Every problem (missing file, not a zip, truncated, another program's .npz, a torch
    checkpoint, wrong shapes) raises CheckpointError with a one-line message naming `path`.
    """
    path = Path(path)
    try:
        contents = _read_arrays(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
    if "format" not in contents or str(contents["format"]) != FORMAT:
        raise _fail(path, f"no '{FORMAT}' format entry")
    try:
        version = int(contents.get("version", -1))
        if version != VERSION:
            raise ValueError(f"format version {version}, this mnistlab reads version {VERSION}")
        config = json.loads(str(contents["config"]))
        extra = json.loads(str(contents.get("extra", "{}")))
        weights = {k: v for k, v in contents.items() if k[:1] in "Wb" and k[1:].isdigit()}
        net = MLP.from_arrays(weights, config["activation"], config.get("init", "he"),
                              config.get("dtype"))
        if list(net.sizes) != list(config["sizes"]):
            raise ValueError(f"weights give sizes {list(net.sizes)}, config says "
                             f"{config['sizes']}")
    except KeyError as e:
        raise _fail(path, f"missing {e}") from None
    except (TypeError, ValueError) as e:
        raise _fail(path, str(e)) from None
    return net, extra
