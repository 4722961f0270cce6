"""Finding data files: resolution order, layouts, checksums, downloads from a local server.

Every test uses a temporary data set whose checksums are computed from synthetic files, so
that the real MD5-checked path runs end to end without MNIST and without the network.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gzip
import http.server
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import synthetic_spec, write_dataset
from mnistlab.cli import main
from mnistlab.data import download as download_module
from mnistlab.data.dataset import load_dataset
from mnistlab.data.locate import ENV_VAR, cache_root, ensure_files, md5_of
from mnistlab.data.registry import DATASETS, DatasetSpec, FileSpec
from mnistlab.errors import MnistlabError

KEYS = ("train_images", "train_labels", "test_images", "test_labels")


@pytest.fixture
def source(tmp_path_factory) -> Path:
    """The 'official' gzipped files of the synthetic data set, as mirrors would serve them."""
    return write_dataset(tmp_path_factory.mktemp("source"), n_train=120, n_test=40)


@pytest.fixture
def spec(source, tmp_path_factory, monkeypatch) -> DatasetSpec:
    """A registered data set whose MD5s are those of `source`'s files; its system folder is
    empty until a test fills it."""
    spec = dataclasses.replace(synthetic_spec(source),
                               system_dirs=(str(tmp_path_factory.mktemp("system")),))
    monkeypatch.setitem(DATASETS, "synth", spec)
    monkeypatch.delenv(ENV_VAR, raising=False)
    return spec


def install(source: Path, folder: Path, extract: bool = False) -> Path:
    """Copy the four files into `folder`, gzipped as served or extracted."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if extract:
            (folder / path.name.removesuffix(".gz")).write_bytes(gzip.decompress(path.read_bytes()))
        else:
            shutil.copy(path, folder / path.name)
    return folder


def origins(found) -> set[str]:
    return {f.origin for f in found.values()}


def test_resolution_order(spec, source, tmp_path, monkeypatch):
    data_dir = install(source, tmp_path / "flag")
    install(source, tmp_path / "env")
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    install(source, cache_root() / "synth")
    install(source, Path(spec.system_dirs[0]))

    assert origins(ensure_files(spec, data_dir, download_ok=False)) == {"--data-dir"}
    assert origins(ensure_files(spec, None, download_ok=False)) == {f"${ENV_VAR}"}
    monkeypatch.delenv(ENV_VAR)
    assert origins(ensure_files(spec, None, download_ok=False)) == {"cache"}
    shutil.rmtree(cache_root())
    found = ensure_files(spec, None, download_ok=False)
    assert origins(found) == {"system"}
    assert all(f.path.parent == Path(spec.system_dirs[0]) for f in found.values())


def test_resolution_is_per_file(spec, source, tmp_path):
    """A data dir with only some of the files is completed from the next location."""
    install(source, cache_root() / "synth")
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(source / spec.files["test_labels"].name, partial)
    found = ensure_files(spec, partial, download_ok=False)
    assert found["test_labels"].origin == "--data-dir"
    assert {found[k].origin for k in KEYS[:3]} == {"cache"}


@pytest.mark.parametrize("layout", ["", "synth", "SYNTH/raw"])
@pytest.mark.parametrize("extract", [False, True], ids=["gz", "extracted"])
def test_layouts(spec, source, tmp_path, layout, extract):
    """<root>, <root>/<name> and torchvision's <root>/<Folder>/raw, gzipped or extracted."""
    folder = install(source, tmp_path / "root" / layout, extract=extract)
    found = ensure_files(spec, tmp_path / "root", download_ok=False)
    assert {f.path.parent for f in found.values()} == {folder}
    assert all(f.path.name.endswith(".gz") != extract for f in found.values())
    data = load_dataset("synth", tmp_path / "root", download=False)
    assert data.train_images.shape == (120, 28, 28) and len(data.test_labels) == 40


def test_recompressed_copy_is_recognised_by_its_content(spec, source, tmp_path):
    """Debian re-compresses Fashion-MNIST: different .gz bytes, same IDX data."""
    folder = tmp_path / "debian"
    folder.mkdir()
    for path in source.iterdir():
        (folder / path.name).write_bytes(gzip.compress(gzip.decompress(path.read_bytes()),
                                                       compresslevel=1, mtime=12345))
        assert md5_of((folder / path.name).read_bytes()) != md5_of(path.read_bytes())
    assert origins(ensure_files(spec, folder, download_ok=False)) == {"--data-dir"}


def corrupt(path: Path) -> None:
    """Same size and still valid gzip, but different IDX data."""
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[-1] ^= 0xFF
    path.write_bytes(gzip.compress(bytes(raw)))


def test_wrong_md5_is_rejected_and_the_next_location_used(spec, source, tmp_path):
    bad = install(source, tmp_path / "bad")
    corrupt(bad / spec.files["train_images"].name)
    install(source, cache_root() / "synth")
    found = ensure_files(spec, bad, download_ok=False)
    assert found["train_images"].origin == "cache"
    assert found["train_labels"].origin == "--data-dir"


def test_a_rejected_copy_replaced_by_another_is_said_once(spec, source, tmp_path, capsys):
    bad = install(source, tmp_path / "bad")
    corrupt(bad / spec.files["train_images"].name)
    install(source, cache_root() / "synth")
    ensure_files(spec, bad, download_ok=False)
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"mnistlab: note: rejected {bad / spec.files['train_images'].name}: MD5 "
                     f"mismatch (got {lines[0].split('got ')[1].split(' ')[0]} for the IDX data, "
                     f"expected {spec.files['train_images'].raw_md5}); using "
                     f"{cache_root() / 'synth' / spec.files['train_images'].name} (cache) instead"]


def test_a_missing_data_dir_is_said_before_falling_back(spec, source, tmp_path, monkeypatch,
                                                       capsys):
    monkeypatch.setenv(ENV_VAR, str(source))
    missing = tmp_path / "no" / "such" / "folder"
    found = ensure_files(spec, missing, download_ok=False)
    assert origins(found) == {f"${ENV_VAR}"}
    err = capsys.readouterr().err
    assert err == (f"mnistlab: note: --data-dir {missing}: no such folder; looking in the "
                   "other places\n")
    ensure_files(spec, source, download_ok=False)  # an existing folder: nothing to say
    assert capsys.readouterr().err == ""


def test_wrong_md5_only_copy_is_an_error_that_says_why(spec, source, tmp_path):
    bad = install(source, tmp_path / "bad")
    corrupt(bad / spec.files["train_images"].name)
    (bad / spec.files["test_labels"].name).write_bytes(b"\x1f\x8bnot gzip at all")
    with pytest.raises(MnistlabError) as e:
        ensure_files(spec, bad, download_ok=False)
    message = str(e.value)
    assert f"rejected {bad / spec.files['train_images'].name}: MD5 mismatch" in message
    assert f"rejected {bad / spec.files['test_labels'].name}: corrupt gzip data" in message


def test_unwritable_download_folder_is_an_error_not_a_traceback(spec, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(MnistlabError) as e:
        ensure_files(spec, blocker / "data", mirrors=["http://127.0.0.1:9/"])
    assert "cannot create" in str(e.value)


def test_corrupt_deflate_stream_is_rejected_not_a_traceback(spec, source, tmp_path):
    bad = install(source, tmp_path / "bad")
    path = bad / spec.files["test_labels"].name
    data = bytearray(path.read_bytes())
    data[10:12] = b"\xff\xff"  # gzip header intact, deflate block type invalid: zlib.error
    path.write_bytes(bytes(data))
    with pytest.raises(MnistlabError) as e:
        ensure_files(spec, bad, download_ok=False)
    assert f"rejected {path}: corrupt gzip data" in str(e.value)


# ---- downloads from a local HTTP server ---------------------------------------------------

class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@contextlib.contextmanager
def http_server(root: Path) -> Iterator[str]:
    """Serve `root` on 127.0.0.1; yields the base URL."""
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"  # nothing listens there now: connection refused


@pytest.fixture
def server(source, tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    install(source, root / "good")
    for path in install(source, root / "corrupt").iterdir():
        corrupt(path)
    with http_server(root) as base:
        yield base


def test_download_good_files(spec, server, tmp_path):
    dest = tmp_path / "dest"
    found = ensure_files(spec, dest, mirrors=[server + "good/"])
    assert origins(found) == {"download"}
    assert sorted(p.name for p in dest.iterdir()) == sorted(f.name for f in spec.files.values())
    assert origins(ensure_files(spec, dest, download_ok=False)) == {"--data-dir"}  # reused


def test_download_goes_to_the_cache_without_data_dir(spec, server):
    ensure_files(spec, None, mirrors=[server + "good/"])
    assert len(list((cache_root() / "synth").glob("*.gz"))) == 4


def test_download_shows_progress(spec, server, tmp_path, capsys):
    ensure_files(spec, tmp_path / "dest", mirrors=[server + "good/"], progress=True)
    err = capsys.readouterr().err
    assert f"Downloading {server}good/{spec.files['train_images'].name}" in err
    assert "[" + "#" * 30 + "]" in err and "MB/s" in err


def test_corrupt_download_is_never_kept(spec, server, tmp_path):
    dest = tmp_path / "dest"
    with pytest.raises(MnistlabError) as e:
        ensure_files(spec, dest, mirrors=[server + "corrupt/"])
    assert "MD5 mismatch" in str(e.value)
    assert list(dest.iterdir()) == []  # no file, not even a .part


@pytest.mark.parametrize("first", ["404", "refused"])
def test_failing_mirror_then_a_good_one(spec, server, tmp_path, first):
    bad = server + "missing/" if first == "404" else closed_port_url()
    dest = tmp_path / "dest"
    found = ensure_files(spec, dest, mirrors=[bad, server + "corrupt/", server + "good/"])
    assert origins(found) == {"download"}
    assert sorted(p.name for p in dest.iterdir()) == sorted(f.name for f in spec.files.values())


def test_interrupted_download_leaves_nothing_behind(spec, server, tmp_path, monkeypatch):
    """A Ctrl-C in the middle of a download removes the partial file."""

    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(download_module, "_progress_line", interrupt)
    dest = tmp_path / "dest"
    with pytest.raises(KeyboardInterrupt):
        ensure_files(spec, dest, mirrors=[server + "good/"], progress=True)
    assert list(dest.iterdir()) == []


def test_no_network_message_says_exactly_what_to_fetch(spec, tmp_path):
    dest = tmp_path / "nowhere"
    mirrors = [closed_port_url(), closed_port_url() + "mirror2/"]
    with pytest.raises(MnistlabError) as e:
        ensure_files(spec, dest, mirrors=mirrors)
    message = str(e.value)
    assert e.value.exit_code == 2
    assert "could not find or download 4 file(s)" in message
    assert f"Put these files in {dest}" in message
    for f in spec.files.values():
        assert f"{f.name}  md5 {f.md5}" in message
    for m in spec.mirrors:
        assert m in message
    assert message.count("download failed") == 4 and "Connection refused" in message


def test_cli_exits_2_with_the_message_when_files_are_missing(spec, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["data", "--dataset", "synth", "--data-dir", str(empty), "--no-download"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mnistlab: error: Synthetic digits: could not find or download")
    assert f"Put these files in {empty}" in err and "Traceback" not in err
    for f in spec.files.values():
        assert f.md5 in err


def test_load_dataset_checks_image_and_label_counts(spec, source, tmp_path, monkeypatch):
    """Files that pass their checksums but disagree with each other are still refused."""
    from mnistlab.data.idx import write_idx

    folder = tmp_path / "mismatch"
    folder.mkdir()
    write_idx(folder / spec.files["train_images"].name, np.zeros((5, 28, 28), np.uint8))
    write_idx(folder / spec.files["train_labels"].name, np.zeros(4, np.uint8))
    for key in ("test_images", "test_labels"):
        shutil.copy(source / spec.files[key].name, folder)
    lying = {k: FileSpec(f.name, md5_of((folder / f.name).read_bytes()), None, 0)
             for k, f in spec.files.items()}
    monkeypatch.setitem(DATASETS, "synth", DatasetSpec(
        "synth", "Synthetic digits", lying, (), spec.classes, "SYNTH"))
    with pytest.raises(MnistlabError, match=r"has 5 images but .* has 4 labels"):
        load_dataset("synth", folder, download=False, use_cache=False)


def test_decoded_arrays_are_cached_by_md5(spec, source, tmp_path):
    install(source, tmp_path / "d")
    first = load_dataset("synth", tmp_path / "d", download=False)
    cached = sorted((cache_root() / "decoded").glob("*.npy"))
    assert {p.stem for p in cached} == {f.md5 for f in spec.files.values()}
    second = load_dataset("synth", tmp_path / "d", download=False)
    assert (first.train_images == second.train_images).all()


def test_an_empty_decoded_cache_file_is_ignored(spec, source, tmp_path):
    install(source, tmp_path / "d")
    first = load_dataset("synth", tmp_path / "d", download=False)
    for cached in (cache_root() / "decoded").glob("*.npy"):
        cached.write_bytes(b"")  # np.load raises EOFError on an empty file
    second = load_dataset("synth", tmp_path / "d", download=False)
    assert (first.train_images == second.train_images).all()
    assert not list((cache_root() / "decoded").glob(".*.tmp"))
