"""Shared fixtures: synthetic IDX data sets made on the fly, and the real MNIST when present.

Tests never download and never need committed data. Real-data tests skip when
MNISTLAB_DATA is unset, except in CI (MNISTLAB_REQUIRE_REAL_DATA=1), where they must run.
Likewise for optional extras and tools (fastapi, uvicorn, httpx, onnx, tensorboard,
Playwright, Chromium): `needs_modules` and `missing` skip on a developer's machine and fail
in CI (`in_ci`), so that a broken install cannot pass there as a row of skips; and every
`pytest.importorskip` in the tests, at module level or in a test, is turned from a skip
into a failure in CI by the report hooks at the end of this file.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest

from mnistlab.data.idx import write_idx
from mnistlab.data.locate import md5_of
from mnistlab.data.registry import MNIST, DatasetSpec, FileSpec


def in_ci() -> bool:
    """CI (.ci/run sets MNISTLAB_REQUIRE_REAL_DATA; CI is the usual variable of CI services)
    must run every test: nothing it needs may be skipped for being absent."""
    return bool(os.environ.get("MNISTLAB_REQUIRE_REAL_DATA") or os.environ.get("CI"))


def missing(reason: str) -> NoReturn:
    """Something a test needs is not installed: skip it here, fail it in CI. Works inside a
    test or fixture and at module level (a module-level failure is a collection error)."""
    if in_ci():
        pytest.fail(f"{reason}; required in CI (MNISTLAB_REQUIRE_REAL_DATA or CI is set)",
                    pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def needs_modules(*modules: str, extra: str) -> None:
    """Skip (fail in CI) unless every module imports; `extra` is what installs them, e.g.
    "serve" -> pip install 'mnistlab[serve]'."""
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    if absent:
        missing(f"{', '.join(absent)} not installed (pip install 'mnistlab[{extra}]')")


def draw_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A small learnable 10-class image set: class k is a bar pattern at a class-specific
    place, jittered and noised, so a model must learn something to separate them."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    images = rng.integers(0, 40, size=(n, 28, 28)).astype(np.int32)
    for i, k in enumerate(labels):
        r, c = 4 + (k // 5) * 12 + rng.integers(-1, 2), 2 + (k % 5) * 5 + rng.integers(-1, 2)
        images[i, r : r + 8, c : c + 3] += 200
    return np.clip(images, 0, 255).astype(np.uint8), labels


def write_dataset(folder: Path, n_train: int = 600, n_test: int = 200, seed: int = 0) -> Path:
    """Write the four IDX files of a synthetic data set (gzipped, canonical names)."""
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = draw_digits(n_train, seed)
    test_x, test_y = draw_digits(n_test, seed + 1)
    write_idx(folder / "train-images-idx3-ubyte.gz", train_x)
    write_idx(folder / "train-labels-idx1-ubyte.gz", train_y)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", test_x)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", test_y)
    return folder


def synthetic_spec(folder: Path, name: str = "synth") -> DatasetSpec:
    """A DatasetSpec whose MD5s are those of the IDX files in `folder` (canonical names), so
    that the MD5-checked path (`ensure_files`, `load_dataset`, the CLI) accepts them once it
    is registered, e.g. `monkeypatch.setitem(DATASETS, spec.name, spec)`."""
    files = {}
    for key, fspec in MNIST.files.items():
        packed = (folder / fspec.name).read_bytes()
        raw = gzip.decompress(packed)
        files[key] = FileSpec(fspec.name, md5_of(packed), md5_of(raw), len(raw))
    return DatasetSpec(name=name, title="Synthetic digits", files=files,
                       mirrors=("http://127.0.0.1:9/unused/",), classes=MNIST.classes,
                       torchvision_folder=name.upper())


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty user cache; the real-data location is kept."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


def load_synthetic(folder: Path):
    """A DigitData from synthetic IDX files (checksums are not MNIST's, so it is loaded
    through the IDX reader directly rather than through the MD5-checked registry)."""
    import torch

    from mnistlab.data.dataset import DigitData
    from mnistlab.data.idx import read_idx
    from mnistlab.data.locate import LocatedFile

    arrays = {k: read_idx(folder / f.name) for k, f in MNIST.files.items()}
    files = {k: LocatedFile(folder / f.name, "synthetic", "test") for k, f in MNIST.files.items()}
    return DigitData(MNIST, torch.from_numpy(arrays["train_images"]),
                     torch.from_numpy(arrays["train_labels"].astype(np.int64)),
                     torch.from_numpy(arrays["test_images"]),
                     torch.from_numpy(arrays["test_labels"].astype(np.int64)), files)


@pytest.fixture
def synthetic_data(tmp_path):
    """A DigitData built from synthetic IDX files, fresh for each test."""
    return load_synthetic(write_dataset(tmp_path / "synthetic"))


def registered_synth(tmp_path_factory, **sizes) -> Iterator[Path]:
    """For a module-scoped fixture: a synthetic data set written once (write_dataset's
    `sizes`) and registered as `synth` (MD5-checked like the real ones) until the module ends."""
    from mnistlab.data.registry import DATASETS

    folder = write_dataset(tmp_path_factory.mktemp("synth"), **sizes)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(DATASETS, "synth", synthetic_spec(folder))
        yield folder


@pytest.fixture
def synth(tmp_path, monkeypatch):
    """`mnistlab train` options for a quick run on a small synthetic data set."""
    from mnistlab.data.registry import DATASETS
    from mnistlab.train import clock

    folder = write_dataset(tmp_path / "synth")
    monkeypatch.setitem(DATASETS, "synth", synthetic_spec(folder))
    yield ["--dataset", "synth", "--data-dir", str(folder), "--model", "mlp", "--hidden", "32",
           "--val-size", "100", "--bf16", "off", "--runs-dir", str(tmp_path / "runs"),
           "--threads", "1"]
    clock.clear_command_start()  # main() marks it in this process


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory) -> Path:
    """A run directory of lenet5 trained for 1 epoch on synthetic data, shared by the session
    (tests must not modify it)."""
    from mnistlab.train import resolve_config, train

    root = tmp_path_factory.mktemp("synthetic-run")
    data = load_synthetic(write_dataset(root / "data"))
    config = resolve_config(model="lenet5", epochs=1, val_size=100, runs_dir=str(root),
                            name="lenet5", bf16="off", seed=0)
    return train(config, data=data, stream=io.StringIO()).run_dir


def real_data_dir() -> str | None:
    root = os.environ.get("MNISTLAB_DATA")
    if root and any((Path(root) / sub / "train-images-idx3-ubyte.gz").is_file()
                    for sub in ("", "mnist", "MNIST/raw")):
        return root
    return None


@pytest.fixture(scope="session")
def real_mnist():
    """The real MNIST as DigitData; skipped without it, an error in CI."""
    root = real_data_dir()
    if root is None:
        if os.environ.get("MNISTLAB_REQUIRE_REAL_DATA"):
            pytest.fail("MNISTLAB_REQUIRE_REAL_DATA is set but MNISTLAB_DATA has no MNIST files")
        pytest.skip("real MNIST not available (set MNISTLAB_DATA)")
    from mnistlab.data.dataset import load_dataset

    return load_dataset("mnist", download=False)


@pytest.fixture(scope="session")
def real_default_run(real_mnist, tmp_path_factory) -> Path:
    """`mnistlab train` with the default recipe on the real MNIST, once per session (a
    minute or so on a laptop CPU); tests must not modify the run directory."""
    from mnistlab.cli import main

    runs = tmp_path_factory.mktemp("real-runs")
    assert main(["train", "--runs-dir", str(runs)]) == 0
    (run,) = runs.iterdir()
    return run


# ---- in CI, a missing import is a failure, not a skip ---------------------------------------

IMPORT_SKIP = "could not import '"  # how pytest.importorskip words its skip


def _fail_import_skips(report) -> None:
    if not (report.skipped and in_ci()):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if IMPORT_SKIP in reason:
        report.outcome = "failed"
        report.longrepr = (f"{reason.removeprefix('Skipped: ')}; required in CI "
                           "(MNISTLAB_REQUIRE_REAL_DATA or CI is set)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_import_skips(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_import_skips(outcome.get_result())
