"""Fuzzing the loaders with Hypothesis: the image loader (`load_image`), the checkpoint
loader (`load_model`: .pt and .npz) and the run loaders (`load_run`, `compare_runs`, and
the commands that read a run). Inputs are random bytes, real files cut short or with bytes
changed, images of every mode with huge declared sizes, checkpoints whose fields hold junk,
and run folders whose config.json, summary.json and metrics.csv hold junk or are missing.

The property: the only exception that escapes is MnistlabError (the one-line error), no
warning reaches the user, and no call takes longer than `BOUND` seconds (a generous bound,
for a loaded machine: it catches a hang or a quadratic blow-up, not a slow second).

Profiles: a short one by default (the whole file in well under a minute), and a long one
with MNISTLAB_FUZZ=long (1,000 examples per test; the count each test ran is printed
with `-s`).
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from mnistlab.checkpoint import load_model
from mnistlab.errors import MnistlabError
from mnistlab.models import create_model
from mnistlab.predict.preprocess import load_image

LONG = os.environ.get("MNISTLAB_FUZZ") == "long"
settings.register_profile("mnistlab-short", max_examples=25, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.function_scoped_fixture])
settings.register_profile("mnistlab-long", max_examples=1000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.function_scoped_fixture])
PROFILE = settings.get_profile("mnistlab-long" if LONG else "mnistlab-short")
BOUND = 10.0  # seconds per call, at most
CALLS: dict[str, int] = {}


def only_mnistlab_errors(name: str, call, *args) -> object:
    """Run `call`; a MnistlabError is a fine answer (one line), anything else fails the test;
    and so does a call slower than BOUND."""
    CALLS[name] = CALLS.get(name, 0) + 1
    start = time.perf_counter()
    result = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = call(*args)
        except MnistlabError as e:
            assert "\n" not in str(e).strip() or name.startswith("cli"), repr(str(e))
    seconds = time.perf_counter() - start
    # Python hides these two from users by default: torch's notices about itself, and
    # numpy's unclosed file when np.load fails on a damaged zip (numpy's, not ours).
    leaked = [f"{w.category.__name__}: {w.message}" for w in caught
              if not issubclass(w.category, DeprecationWarning | ResourceWarning)]
    assert not leaked, f"{name}: a warning reached the user: {leaked[0]}"
    assert seconds < BOUND, f"{name}: {seconds:.1f} s on one input"
    return result


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    if LONG:
        print("\nfuzzed calls: " + ", ".join(f"{k} {v}" for k, v in sorted(CALLS.items())))


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


# ---- the image loader ---------------------------------------------------------------------

FORMATS = ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM"]
MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "I", "I;16", "F"]


@st.composite
def small_images(draw) -> Image.Image:
    """A 1-64 px picture of any mode: noise, dots or lines, sometimes transparent."""
    w, h = draw(st.integers(1, 64)), draw(st.integers(1, 64))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["noise", "dots", "line", "blank"]))
    gray = np.full((h, w), 255, np.uint8)
    if kind == "noise":
        gray = rng.integers(0, 256, (h, w), dtype=np.uint8)
    elif kind == "dots":
        gray[rng.integers(0, h, 20), rng.integers(0, w, 20)] = 0
    elif kind == "line":
        gray[h // 2, :] = 0
    image = Image.fromarray(gray, "L")
    mode = draw(st.sampled_from(MODES))
    if mode in ("LA", "PA", "RGBA"):
        alpha = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L")
        image = image.convert("RGBA")
        image.putalpha(alpha)
        return image.convert(mode) if mode != "PA" else image.convert("P").convert("PA")
    return image.convert(mode)


def encode(image: Image.Image, fmt: str) -> bytes | None:
    """The picture in `fmt`, converted to a mode the format can hold; None if it cannot."""
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=fmt)
    except (OSError, ValueError, KeyError):
        try:
            image.convert("RGBA" if fmt in ("PNG", "WEBP", "TIFF") else "RGB").save(
                buffer, format=fmt)
        except (OSError, ValueError, KeyError):
            return None
    return buffer.getvalue()


@st.composite
def damaged(draw, data: bytes) -> bytes:
    """`data` cut short, with bytes changed, or both."""
    if draw(st.booleans()) and len(data) > 1:
        data = data[: draw(st.integers(0, len(data) - 1))]
    changes = draw(st.lists(st.tuples(st.integers(0, max(len(data) - 1, 0)),
                                      st.integers(0, 255)), max_size=8))
    array = bytearray(data)
    for where, value in changes:
        if array:
            array[where] = value
    return bytes(array)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return (struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))


def huge_png(width: int, height: int, color_type: int, bit_depth: int) -> bytes:
    """A valid PNG header declaring a huge picture, followed by a little (too little) data."""
    head = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type,
                                          0, 0, 0))
    return (b"\x89PNG\r\n\x1a\n" + head + png_chunk(b"IDAT", zlib.compress(bytes(1000)))
            + png_chunk(b"IEND", b""))


def huge_gif(width: int, height: int) -> bytes:
    return (b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00"
            + b"\x2c" + struct.pack("<HHHH", 0, 0, width, height) + b"\x00\x02\x02\x44\x01\x00"
            + b"\x3b")


def huge_bmp(width: int, height: int) -> bytes:
    header = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(header) + 64, 0, 0, 14 + len(header)) \
        + header + bytes(64)


@PROFILE
@given(data=st.binary(max_size=4096))
def test_load_image_on_random_bytes(tmp_path, data):
    only_mnistlab_errors("load_image random bytes", load_image, write(tmp_path, "x.png", data))


@PROFILE
@given(image=small_images(), fmt=st.sampled_from(FORMATS), data=st.data())
def test_load_image_on_real_pictures_cut_short_or_changed(tmp_path, image, fmt, data):
    encoded = encode(image, fmt)
    assume(encoded is not None)
    intact = only_mnistlab_errors("load_image intact", load_image,
                                  write(tmp_path, f"x.{fmt.lower()}", encoded))
    assert isinstance(intact, Image.Image) and intact.size == image.size
    broken = data.draw(damaged(encoded))
    result = only_mnistlab_errors("load_image damaged", load_image,
                                  write(tmp_path, f"y.{fmt.lower()}", broken))
    assert result is None or isinstance(result, Image.Image)


@PROFILE
@given(width=st.integers(1, 2**31 - 1), height=st.integers(1, 2**31 - 1),
       kind=st.sampled_from(["png", "gif", "bmp"]),
       png=st.sampled_from([(0, 1), (0, 8), (0, 16), (2, 8), (2, 16), (3, 8), (4, 8), (6, 8),
                            (6, 16)]))
def test_load_image_on_huge_declared_sizes(tmp_path, width, height, kind, png):
    if kind == "png":
        data = huge_png(width, height, *png)
    elif kind == "gif":
        data = huge_gif(min(width, 65535), min(height, 65535))
    else:
        data = huge_bmp(width, height)
    only_mnistlab_errors("load_image huge", load_image, write(tmp_path, f"x.{kind}", data))


def test_load_image_on_a_missing_file_and_a_folder(tmp_path):
    for path in (tmp_path / "missing.png", tmp_path):
        with pytest.raises(MnistlabError):
            load_image(path)


# ---- the checkpoint loader ----------------------------------------------------------------

def good_checkpoint(**changes) -> dict:
    state = {"model": {"name": "mlp", "kwargs": {"hidden": "8"}},
             "state_dict": create_model("mlp", hidden="8").state_dict(),
             "normalizer": {"mean": 0.1307, "std": 0.3081}, "dataset": "mnist",
             "classes": [str(i) for i in range(10)], "epoch": 1}
    state.update(changes)
    return state


def saved(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save({"format": "mnistlab-checkpoint", "version": 1, **state}, buffer)
    return buffer.getvalue()


GOOD_PT = saved(good_checkpoint())

# JSON-like junk, plus tensors and non-finite numbers, for any field of a checkpoint.
LEAVES = (st.none() | st.booleans() | st.integers(-2**40, 2**40)
          | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20)
          | st.sampled_from([torch.zeros(3), torch.full((2, 2), math.nan), torch.tensor(7),
                             torch.zeros(0), torch.ones(10, 784)]))
JUNK = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
FIELDS = ["model", "state_dict", "normalizer", "dataset", "classes", "config", "bf16",
          "epoch", "batch", "best", "version", "format", "digit_gate", "outliers"]


@PROFILE
@given(data=st.binary(max_size=4096))
def test_load_model_on_random_bytes(tmp_path, data):
    only_mnistlab_errors("load_model random bytes", load_model, write(tmp_path, "x.pt", data))


@PROFILE
@given(data=st.data())
def test_load_model_on_a_checkpoint_cut_short_or_changed(tmp_path, data):
    broken = data.draw(damaged(GOOD_PT))
    only_mnistlab_errors("load_model damaged", load_model, write(tmp_path, "x.pt", broken))


@PROFILE
@given(changes=st.dictionaries(st.sampled_from(FIELDS), JUNK, min_size=1, max_size=3),
       drop=st.lists(st.sampled_from(FIELDS), max_size=2))
def test_load_model_on_checkpoints_with_junk_fields(tmp_path, changes, drop):
    state = good_checkpoint(**changes)
    for key in drop:
        state.pop(key, None)
    only_mnistlab_errors("load_model junk fields", load_model,
                         write(tmp_path, "x.pt", saved(state)))


@PROFILE
@given(hidden=st.lists(st.integers(1, 12), min_size=1, max_size=2),
       kwargs=st.dictionaries(st.sampled_from(["hidden", "activation", "width", "dropout"]),
                              JUNK, max_size=2))
def test_load_model_on_model_descriptions_with_junk_arguments(tmp_path, hidden, kwargs):
    spec = {"name": "mlp", "kwargs": {"hidden": ",".join(map(str, hidden)), **kwargs}}
    state = good_checkpoint(model=spec)
    only_mnistlab_errors("load_model junk arguments", load_model,
                         write(tmp_path, "x.pt", saved(state)))


def good_npz() -> bytes:
    from mnistlab.scratch.checkpoint import save_npz
    from mnistlab.scratch.network import MLP

    buffer = Path(os.environ.get("TMPDIR", "/tmp")) / f"mnistlab-fuzz-{os.getpid()}.npz"
    save_npz(buffer, MLP([784, 8, 10], seed=0), {"classes": [str(i) for i in range(10)]})
    data = buffer.read_bytes()
    buffer.unlink()
    return data


@PROFILE
@given(data=st.data(), random=st.binary(max_size=2048))
def test_load_model_on_npz_files_cut_short_changed_or_random(tmp_path, data, random):
    folder = tmp_path / "npz"
    folder.mkdir(exist_ok=True)
    broken = data.draw(damaged(GOOD_NPZ))
    only_mnistlab_errors("load_model npz damaged", load_model,
                         write(folder, "best.npz", broken))
    only_mnistlab_errors("load_model npz random", load_model, write(folder, "x.npz", random))


GOOD_NPZ = good_npz()


# ---- the run loaders ----------------------------------------------------------------------

JSON_JUNK = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**63)
                         | st.floats(allow_nan=False) | st.text(max_size=20),
                         lambda inner: st.lists(inner, max_size=4)
                         | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                         max_leaves=12)
CONFIG_KEYS = ["model", "dataset", "backend", "dry_run", "epochs", "batch_size", "seed",
               "val_size", "lr", "model_args", "data_dir", "bf16", "name"]
SUMMARY_KEYS = ["test_accuracy", "best_val_accuracy", "train_seconds", "parameters",
                "images_per_s", "epochs_run", "dataset", "model", "backend", "dry_run",
                "wall_seconds", "steps", "best_epoch"]
GOOD_METRICS = ("kind,epoch,step,train_loss,train_acc,val_loss,val_acc,lr\n"
                "step,1,1,2.3,,,,0.1\nepoch,1,5,2.0,0.5,1.9,0.6,0.1\n")


@st.composite
def json_file(draw, keys: list[str]) -> bytes | None:
    """None (no file), random bytes, JSON of any shape, or an object of known keys with
    junk values; sometimes deeply nested."""
    kind = draw(st.sampled_from(["missing", "bytes", "json", "keys", "deep"]))
    if kind == "missing":
        return None
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "deep":
        depth = draw(st.integers(100, 100_000))
        return b'{"a": ' + b"[" * depth + b"]" * depth + b"}"
    value = (draw(JSON_JUNK) if kind == "json"
             else draw(st.dictionaries(st.sampled_from(keys), JSON_JUNK, max_size=6)))
    return json.dumps(value).encode()


@st.composite
def metrics_file(draw) -> bytes | None:
    kind = draw(st.sampled_from(["missing", "good", "bytes", "damaged", "cells"]))
    if kind == "missing":
        return None
    if kind == "good":
        return GOOD_METRICS.encode()
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "damaged":
        return draw(damaged(GOOD_METRICS.encode()))
    cells = draw(st.lists(st.sampled_from(["", "1", "-1", "nan", "inf", "1e400", "x", "step",
                                           "epoch", "0.5", "9" * 30]), min_size=8, max_size=8))
    return (GOOD_METRICS + ",".join(cells) + "\n").encode()


@st.composite
def run_folders(draw) -> dict[str, bytes | None]:
    return {"config.json": draw(json_file(CONFIG_KEYS)),
            "summary.json": draw(json_file(SUMMARY_KEYS)),
            "metrics.csv": draw(metrics_file())}


def make_run(root: Path, files: dict[str, bytes | None]) -> Path:
    run = root / "run"
    run.mkdir(exist_ok=True)
    for name, content in files.items():
        (run / name).unlink(missing_ok=True)
        if content is not None:
            (run / name).write_bytes(content)
    return run


@PROFILE
@given(files=run_folders())
def test_run_loaders_on_junk_run_folders(tmp_path, files):
    from mnistlab.viz.compare import compare_runs, format_csv, format_table
    from mnistlab.viz.curves import collect_runs, load_run

    run = make_run(tmp_path, files)
    only_mnistlab_errors("load_run", load_run, run)
    rows = only_mnistlab_errors("compare_runs", compare_runs, [run], True)
    if rows is not None:
        only_mnistlab_errors("format_table", format_table, rows[0])
        only_mnistlab_errors("format_csv", format_csv, rows[0])
    only_mnistlab_errors("collect_runs", collect_runs, [run], True)


@PROFILE
@given(files=run_folders())
def test_commands_on_junk_run_folders(tmp_path, capsys, files):
    """The commands that read a run: exit 0 or 2, and a traceback never."""
    from mnistlab.cli import main

    run = make_run(tmp_path, files)
    for argv in (["compare", str(run), "--include-dry-runs"],
                 ["compare", str(run), "--json", "--include-dry-runs"],
                 ["plot", str(run), "--include-dry-runs", "-o", str(tmp_path / "c.png")]):
        code = only_mnistlab_errors("cli " + argv[0], main, argv)
        err = capsys.readouterr().err
        assert code in (0, 2), (argv, err)
        assert "Traceback" not in err


# ---- what the fuzzing found, kept as plain examples ---------------------------------------

def test_found_a_checkpoint_version_that_is_not_a_number(tmp_path):
    for version in (None, "1", 1.5, True, 0):
        path = write(tmp_path, "x.pt", saved(good_checkpoint(version=version)))
        with pytest.raises(MnistlabError, match="version must be a positive integer"):
            load_model(path)


def test_found_a_tensor_argument_whose_message_spanned_lines(tmp_path):
    spec = {"name": "mlp", "kwargs": {"hidden": torch.full((2, 2), math.nan)}}
    with pytest.raises(MnistlabError) as info:
        load_model(write(tmp_path, "x.pt", saved(good_checkpoint(model=spec))))
    assert "\n" not in str(info.value) and "hidden=tensor([[nan, nan], [nan, nan]])" in str(
        info.value)


@pytest.mark.parametrize(("name", "content", "words"), [
    ("metrics.csv", b"\x80", "not text (invalid UTF-8)"),
    ("metrics.csv", b"kind,epoch\nepoch,nan\n", "column 'epoch' has a non-number 'nan'"),
    ("metrics.csv", b"kind,epoch\nepoch,inf\n", "column 'epoch' has a non-number 'inf'"),
    ("metrics.csv", b"kind,epoch\nepoch,1\x00\n", "column 'epoch' has a non-number"),
    ("config.json", b"\xff\xfe{}", "not text (invalid UTF-8)"),
    ("config.json", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ("summary.json", b"[1, 2]", "expected a JSON object, got list"),
])
def test_found_run_files_that_broke_the_run_loader(tmp_path, name, content, words):
    from mnistlab.viz.curves import load_run

    files: dict[str, bytes | None] = {"metrics.csv": GOOD_METRICS.encode()}
    files[name] = content
    with pytest.raises(MnistlabError, match=re.escape(words)):
        load_run(make_run(tmp_path, files))


def test_found_summary_values_of_the_wrong_type_are_shown_as_unknown(tmp_path, capsys):
    from mnistlab.cli import main

    summary = {"test_accuracy": "99%", "parameters": [1], "train_seconds": math.nan,
               "model": {"name": "x"}, "dry_run": "no", "epochs_run": None}
    run = make_run(tmp_path, {"metrics.csv": GOOD_METRICS.encode(),
                              "summary.json": json.dumps(summary).encode(),
                              "config.json": b'{"model": "lenet5", "dataset": "mnist"}'})
    assert main(["compare", str(run), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["test_accuracy"] is None and row["parameters"] is None
    assert row["model"] == "lenet5" and row["dry_run"] is False
    assert row["best_val_accuracy"] == 0.6  # from metrics.csv


def test_found_a_picture_between_one_and_two_times_the_pixel_limit(tmp_path):
    """PIL only warns there, then decodes hundreds of megabytes: refused in one line."""
    path = write(tmp_path, "big.png", huge_png(10_000, 10_000, 0, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(MnistlabError, match="image too large"):
            load_image(path)


def test_found_one_byte_that_broke_torch_load(tmp_path):
    with pytest.raises(MnistlabError, match="not a readable PyTorch checkpoint"):
        load_model(write(tmp_path, "x.pt", b"X"))


@pytest.mark.parametrize("field", ["classes", "normalizer"])
def test_found_tensor_fields_whose_message_spanned_lines(tmp_path, field):
    state = good_checkpoint(**{field: torch.full((2, 2), math.nan)})
    with pytest.raises(MnistlabError) as info:
        load_model(write(tmp_path, "x.pt", saved(state)))
    assert "\n" not in str(info.value) and "tensor([[nan, nan], [nan, nan]])" in str(info.value)
