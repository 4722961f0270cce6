"""The IDX file format of MNIST and its siblings, read and written with NumPy.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the data in C order, big-endian.
Files may be gzipped; we recognise that by the gzip magic bytes, not by the file name.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from mnistlab.atomic import write_bytes
from mnistlab.errors import MnistlabError

# IDX type code -> big-endian NumPy dtype.
_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("="): code for code, dt in _DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


class IdxError(MnistlabError):
    """A file that is not a valid IDX file; the message names the file."""


def _read_raw(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise IdxError(f"{path}: no such file") from None
    except OSError as e:
        raise IdxError(f"{path}: cannot read ({e.strerror or e})") from None
    if raw[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise IdxError(f"{path.name}: corrupt gzip data ({e})") from None
    return raw


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes (already decompressed) into a native-endian array."""
    if len(raw) < 4:
        raise IdxError(f"{name}: too short to be an IDX file ({len(raw)} bytes)")
    if raw[0] != 0 or raw[1] != 0:
        raise IdxError(f"{name}: not an IDX file (bad magic number {raw[:4].hex()})")
    code, ndim = raw[2], raw[3]
    if code not in _DTYPES:
        raise IdxError(f"{name}: unknown IDX data type 0x{code:02x}")
    if ndim == 0:
        raise IdxError(f"{name}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IdxError(f"{name}: truncated header, expected {header} bytes, got {len(raw)}")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _DTYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) < expected:
        raise IdxError(f"{name}: truncated, expected {expected} bytes, got {len(raw)}")
    if len(raw) > expected:
        raise IdxError(
            f"{name}: {len(raw) - expected} unexpected trailing bytes "
            f"(header declares shape {shape}, {expected} bytes in all)"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file, gzipped or raw; every failure raises IdxError naming the file."""
    path = Path(path)
    return parse_idx(_read_raw(path), path.name)


def encode_idx(array: np.ndarray) -> bytes:
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _CODES:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    code = _CODES[native]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=_DTYPES[code]).tobytes()


def write_idx(path: str | os.PathLike[str], array: np.ndarray,
              compress: bool | None = None) -> None:
    """Write `array` as IDX; gzipped when `compress` is True or the name ends in `.gz`."""
    path = Path(path)
    data = encode_idx(array)
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data, compresslevel=6, mtime=0)
    write_bytes(path, data)


def check_pair(images: np.ndarray, labels: np.ndarray, images_name: str, labels_name: str) -> None:
    """Check that an image file and a label file describe the same examples."""
    if images.ndim != 3:
        raise IdxError(f"{images_name}: expected 3 dimensions (N, rows, cols), got {images.ndim}")
    if labels.ndim != 1:
        raise IdxError(f"{labels_name}: expected 1 dimension (N,), got {labels.ndim}")
    if images.dtype != np.uint8:
        raise IdxError(f"{images_name}: expected unsigned bytes, got {images.dtype}")
    if len(images) != len(labels):
        raise IdxError(
            f"{images_name} has {len(images)} images but {labels_name} has {len(labels)} labels"
        )
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise IdxError(f"{labels_name}: labels must be 0-9, found {labels.min()}..{labels.max()}")
