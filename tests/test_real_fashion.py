"""Debian's Fashion-MNIST (`apt-get install dataset-fashion-mnist`), read where it is installed:
the registry's checksums against the real files, the counts and the class balance, and that
`load_dataset` finds it in the system folder with nothing else configured.

Skipped where the package is not installed, except in CI (MNISTLAB_REQUIRE_REAL_DATA=1 on a
Debian machine whose .ci/apt-packages lists it, i.e. where .ci/run installs it), where it
must run: the same rule as the real MNIST in conftest.py.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from mnistlab.data.registry import FASHION_MNIST

PACKAGE = "dataset-fashion-mnist"
FOLDER = Path(FASHION_MNIST.system_dirs[0])
APT_LIST = Path(__file__).resolve().parents[1] / ".ci" / "apt-packages"


def package_expected() -> bool:
    """CI installs the package on Debian (.ci/run, as root, from .ci/apt-packages)."""
    listed = APT_LIST.is_file() and PACKAGE in APT_LIST.read_text().split()
    return bool(os.environ.get("MNISTLAB_REQUIRE_REAL_DATA")) and listed and bool(
        shutil.which("dpkg"))


@pytest.fixture(scope="module")
def folder() -> Path:
    missing = [f.name for f in FASHION_MNIST.files.values() if not (FOLDER / f.name).is_file()]
    if missing:
        if package_expected():
            pytest.fail(f"MNISTLAB_REQUIRE_REAL_DATA is set and {PACKAGE} is in "
                        f"{APT_LIST.name}, but {FOLDER} lacks {', '.join(missing)}")
        pytest.skip(f"Debian's Fashion-MNIST not installed (apt-get install {PACKAGE})")
    return FOLDER


@pytest.fixture(scope="module")
def raw(folder) -> dict[str, bytes]:
    """The four files' decompressed IDX bytes."""
    return {key: gzip.decompress((folder / f.name).read_bytes())
            for key, f in FASHION_MNIST.files.items()}


@pytest.mark.real_data
def test_the_registry_checksums_match_the_real_files(folder, raw):
    from mnistlab.data.locate import verify

    for key, fspec in FASHION_MNIST.files.items():
        # Debian re-compresses the files, so the .gz MD5 may differ from the mirrors'; the
        # registry's MD5 of the decompressed bytes is what must hold.
        assert len(raw[key]) == fspec.raw_size, key
        assert hashlib.md5(raw[key]).hexdigest() == fspec.raw_md5, key
        md5, reason = verify(folder / fspec.name, FASHION_MNIST, fspec)
        assert md5 is not None and reason == "", f"{fspec.name}: {reason}"


@pytest.mark.real_data
def test_counts_shapes_and_class_balance(raw):
    from mnistlab.data.idx import parse_idx

    arrays = {key: parse_idx(data) for key, data in raw.items()}
    assert arrays["train_images"].shape == (60_000, 28, 28)
    assert arrays["test_images"].shape == (10_000, 28, 28)
    assert arrays["train_images"].dtype == np.uint8
    # Fashion-MNIST is exactly balanced: 6,000 and 1,000 images of every class
    assert np.bincount(arrays["train_labels"], minlength=10).tolist() == [6_000] * 10
    assert np.bincount(arrays["test_labels"], minlength=10).tolist() == [1_000] * 10
    # its published pixel statistics (mean 0.2860, std 0.3530 of [0, 1] pixels)
    counts = np.bincount(arrays["train_images"].ravel(), minlength=256)
    values = np.arange(256) / 255
    mean = (counts * values).sum() / counts.sum()
    std = np.sqrt((counts * (values - mean) ** 2).sum() / counts.sum())
    assert abs(mean - 0.2860) < 5e-4 and abs(std - 0.3530) < 5e-4


@pytest.mark.real_data
def test_load_dataset_finds_the_system_copy_on_its_own(folder, monkeypatch):
    from mnistlab.data.dataset import load_dataset

    monkeypatch.delenv("MNISTLAB_DATA", raising=False)  # nothing but the system folder
    data = load_dataset("fashion-mnist", download=False, use_cache=False)
    assert {f.origin for f in data.files.values()} == {"system"}
    assert {f.path.parent for f in data.files.values()} == {folder}
    assert len(data.train_labels) == 60_000 and len(data.test_labels) == 10_000
    assert data.classes[0] == "T-shirt/top" and data.classes[9] == "Ankle boot"


def test_the_package_is_required_only_where_ci_installs_it(monkeypatch):
    monkeypatch.delenv("MNISTLAB_REQUIRE_REAL_DATA", raising=False)
    assert not package_expected()  # a developer's machine: skip when absent
    monkeypatch.setenv("MNISTLAB_REQUIRE_REAL_DATA", "1")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert not package_expected()  # not Debian: nothing installs it
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/dpkg")
    assert package_expected() == (PACKAGE in APT_LIST.read_text().split())
