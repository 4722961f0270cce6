"""Load a whole data set into memory as tensors: one uint8 tensor of images per split.

MNIST is 55 MB decoded; holding it as tensors makes a batch an index gather, with no
per-sample Python and no DataLoader workers. Decoded arrays are cached as `.npy` files named
by the MD5 of their source, so later runs skip gzip (about 0.05 s instead of 0.5 s).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mnistlab.atomic import atomic_open
from mnistlab.data.idx import IdxError, check_pair, read_idx
from mnistlab.data.locate import LocatedFile, cache_root, ensure_files
from mnistlab.data.registry import DatasetSpec, get_spec


@dataclass
class DigitData:
    """A data set in memory. Images are uint8 (N, 28, 28); labels int64 (N,)."""

    spec: DatasetSpec
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    files: dict[str, LocatedFile]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def classes(self) -> tuple[str, ...]:
        return self.spec.classes

    def md5s(self) -> dict[str, str]:
        return {f.path.name: f.md5 for f in self.files.values()}


def _decoded_cache_path(md5: str) -> Path:
    return cache_root() / "decoded" / f"{md5}.npy"


def decode_cached(located: LocatedFile, use_cache: bool = True) -> np.ndarray:
    """Read an IDX file, via the decoded-array cache when possible (keyed by its MD5)."""
    cached = _decoded_cache_path(located.md5)
    if use_cache and cached.is_file():
        with contextlib.suppress(OSError, ValueError, EOFError):  # EOFError: an empty file
            return np.load(cached, allow_pickle=False)
    array = read_idx(located.path)
    if use_cache:
        # The cache is only an optimisation: a read-only home must not break loading.
        # atomic_open removes its temporary file when the write fails (e.g. a full disk).
        with contextlib.suppress(OSError), atomic_open(cached) as f:
            np.save(f, array, allow_pickle=False)
    return array


def load_dataset(name: str = "mnist", data_dir: str | os.PathLike[str] | None = None,
                 download: bool = True, use_cache: bool = True) -> DigitData:
    spec = get_spec(name)
    files = ensure_files(spec, data_dir, download_ok=download)
    arrays = {key: decode_cached(located, use_cache) for key, located in files.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        check_pair(images, labels, files[f"{split}_images"].path.name,
                   files[f"{split}_labels"].path.name)
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise IdxError("train and test images differ in size: "
                       f"{arrays['train_images'].shape[1:]} vs {arrays['test_images'].shape[1:]}")
    return DigitData(
        spec=spec,
        train_images=torch.from_numpy(arrays["train_images"]),
        train_labels=torch.from_numpy(arrays["train_labels"].astype(np.int64)),
        test_images=torch.from_numpy(arrays["test_images"]),
        test_labels=torch.from_numpy(arrays["test_labels"].astype(np.int64)),
        files=files,
    )
