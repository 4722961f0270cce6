"""The IDX reader and writer: round trips, and a one-line error naming the file for every fault."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from mnistlab.data.idx import IdxError, check_pair, encode_idx, parse_idx, read_idx, write_idx
from mnistlab.errors import MnistlabError


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32,
                                   np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip(tmp_path, dtype, suffix):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((5, 3, 4)) * 100).astype(dtype)
    path = tmp_path / f"data-idx3{suffix}"
    write_idx(path, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def test_header_is_big_endian_as_in_the_mnist_files():
    raw = encode_idx(np.zeros((2, 28, 28), np.uint8))
    assert raw[:4] == bytes([0, 0, 0x08, 3])
    assert raw[4:16] == (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    assert encode_idx(np.array([1], np.int32))[8:] == b"\x00\x00\x00\x01"


def test_gzip_is_recognised_by_content_not_name(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    write_idx(tmp_path / "labels-without-suffix", labels, compress=True)
    write_idx(tmp_path / "labels.gz", labels, compress=False)
    for name in ("labels-without-suffix", "labels.gz"):
        np.testing.assert_array_equal(read_idx(tmp_path / name), labels)


def test_writing_an_unsupported_dtype_is_refused(tmp_path):
    with pytest.raises(ValueError, match="cannot store"):
        write_idx(tmp_path / "x", np.zeros(3, np.uint16))


def header(code: int, *dims: int) -> bytes:
    return bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)


@pytest.mark.parametrize("raw, message", [
    (b"", "too short to be an IDX file (0 bytes)"),
    (b"\x00\x00", "too short to be an IDX file (2 bytes)"),
    (b"\x50\x4b\x03\x04" + bytes(20), "not an IDX file (bad magic number 504b0304)"),
    (header(0x07, 2) + bytes(2), "unknown IDX data type 0x07"),
    (bytes([0, 0, 8, 0]), "IDX header declares 0 dimensions"),
    (bytes([0, 0, 8, 3]) + bytes(6), "truncated header, expected 16 bytes, got 10"),
    (header(0x08, 2, 28, 28) + bytes(1000), "truncated, expected 1584 bytes, got 1016"),
    (header(0x0C, 3) + bytes(11), "truncated, expected 20 bytes, got 19"),
    (header(0x08, 3) + bytes(5), "2 unexpected trailing bytes"),
])
def test_malformed_files_are_named_and_explained(tmp_path, raw, message):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(raw)
    with pytest.raises(IdxError) as e:
        read_idx(path)
    assert str(e.value).startswith(f"{path.name}: {message}")
    assert "\n" not in str(e.value)
    assert isinstance(e.value, MnistlabError) and e.value.exit_code == 2


def test_truncated_gzipped_file_reports_decompressed_sizes(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(header(0x08, 60000, 28, 28) + bytes(4946654)))
    with pytest.raises(IdxError, match=r"^train-images-idx3-ubyte.gz: truncated, "
                                       r"expected 47040016 bytes, got 4946670$"):
        read_idx(path)


@pytest.mark.parametrize("damage", ["cut", "garbage"])
def test_corrupt_gzip(tmp_path, damage):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    write_idx(path, np.arange(1000, dtype=np.uint8) % 10)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "cut"
                     else data[:10] + b"\xff" * (len(data) - 10))
    with pytest.raises(IdxError, match=r"^t10k-labels-idx1-ubyte.gz: corrupt gzip data"):
        read_idx(path)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(IdxError, match=r"nope-idx1-ubyte: no such file$"):
        read_idx(tmp_path / "nope-idx1-ubyte")
    with pytest.raises(IdxError, match=r": cannot read"):
        read_idx(tmp_path)  # a folder


def test_parse_idx_names_the_source():
    with pytest.raises(IdxError, match=r"^memory: too short"):
        parse_idx(b"\x00", "memory")


def test_check_pair_accepts_a_matching_pair():
    check_pair(np.zeros((3, 28, 28), np.uint8), np.array([0, 9, 5], np.uint8), "img", "lbl")


@pytest.mark.parametrize("images, labels, message", [
    (np.zeros((3, 28, 28), np.uint8), np.zeros(4, np.uint8),
     "img has 3 images but lbl has 4 labels"),
    (np.zeros((2, 28, 28), np.uint8), np.array([3, 10], np.uint8), "lbl: labels must be 0-9, "
                                                                   "found 3..10"),
    (np.zeros((2, 28, 28), np.uint8), np.array([-1, 2], np.int8), "found -1..2"),
    (np.zeros((2, 784), np.uint8), np.zeros(2, np.uint8), "img: expected 3 dimensions"),
    (np.zeros((2, 28, 28), np.uint8), np.zeros((2, 1), np.uint8), "lbl: expected 1 dimension"),
    (np.zeros((2, 28, 28), np.float32), np.zeros(2, np.uint8), "img: expected unsigned bytes"),
])
def test_check_pair_rejects_mismatches(images, labels, message):
    with pytest.raises(IdxError, match=message.replace(".", r"\.")):
        check_pair(images, labels, "img", "lbl")
