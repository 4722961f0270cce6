"""The fast path for clean pictures: taken by drawing canvases, never by photos, and always
with the full path's result (the 28x28 array, the problems, the box), bit for bit."""

from __future__ import annotations

import io
from itertools import pairwise

import numpy as np
import pytest
from benchmarks import devset as photolike
from PIL import Image, ImageDraw

from mnistlab.errors import MnistlabError
from mnistlab.predict import predict
from mnistlab.predict.preprocess import (
    analyse,
    clean_ink,
    dilate,
    erode,
    grayscale,
    line_bands,
    max_filter,
    min_filter,
    otsu,
    paper_noise,
    prepare,
    runs,
)
from mnistlab.predict.segment import segment_digits

SIDE = 280  # the page's canvas
STROKE = 0.075  # the page's line width, as a share of the canvas height (static/app.js)


def canvas(lines: list[list[tuple[float, float]]], size: tuple[int, int] = (SIDE, SIDE),
           paper: tuple[int, ...] = (0, 0, 0, 255), ink: tuple[int, ...] = (255, 255, 255, 255),
           mode: str = "RGBA", width: float | None = None) -> Image.Image:
    """Strokes as the page draws them: round-capped, antialiased (drawn 4x larger and
    averaged down), on an opaque canvas; the page's own is white ink on black, RGBA."""
    k = 4
    big = Image.new(mode, (size[0] * k, size[1] * k), paper)
    pen = ImageDraw.Draw(big)
    w = round((width or STROKE * size[1]) * k)
    for points in lines:
        scaled = [(x * k, y * k) for x, y in points]
        pen.line(scaled, fill=ink, width=w, joint="curve")
        for x, y in (scaled[0], scaled[-1]):
            pen.ellipse([x - w / 2, y - w / 2, x + w / 2, y + w / 2], fill=ink)
    return big.resize(size, Image.Resampling.BOX)


def scribbled_digit(rng: np.random.Generator, x0: float = 60, y0: float = 40,
                    w: float = 160, h: float = 200) -> list[list[tuple[float, float]]]:
    """One to three strokes of 2-6 points inside a digit-sized box: digit-like drawings."""
    return [[(x0 + float(rng.uniform(0, w)), y0 + float(rng.uniform(0, h)))
             for _ in range(int(rng.integers(2, 7)))] for _ in range(int(rng.integers(1, 4)))]


def drawings(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [canvas(scribbled_digit(rng)) for _ in range(n)]


def same_result(image: Image.Image) -> bool:
    """prepare() with and without the fast path agree exactly, errors included."""
    outcomes = []
    for fast in (True, False):
        try:
            p = prepare(image, fast=fast)
            outcomes.append((p.array.tobytes(), p.problems, p.box))
        except MnistlabError as e:
            outcomes.append(str(e))
    return outcomes[0] == outcomes[1]


def png(image: Image.Image, fmt: str = "PNG", **options) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    buffer.seek(0)
    return Image.open(buffer)


# ---- canvases take the fast path, with the full path's result ----------------------------

def test_drawn_canvases_take_the_fast_path_with_the_full_paths_result():
    for image in drawings(40):
        fast, full = prepare(image), prepare(image, fast=False)
        assert fast.clean and not full.clean
        np.testing.assert_array_equal(fast.array, full.array)
        assert (fast.problems, fast.box) == (full.problems, full.box)
        assert fast.array.max() == 255  # a real digit-like crop, not an empty field


def test_predictions_on_the_fast_path_agree_with_the_full_path(synthetic_run):
    from mnistlab.checkpoint import load_model

    model, normalizer, _ = load_model(synthetic_run, "cpu")
    images = drawings(24, seed=1)
    fast = predict(model, normalizer, np.stack([prepare(im).array for im in images]), "cpu")
    full = predict(model, normalizer,
                   np.stack([prepare(im, fast=False).array for im in images]), "cpu")
    assert [p.label for p in fast] == [p.label for p in full]
    np.testing.assert_array_equal([p.probabilities for p in fast],
                                  [p.probabilities for p in full])


@pytest.mark.real_data
def test_mnist_test_digits_on_a_canvas_take_the_fast_path(real_mnist):
    """As the load test sends them: 28x28 test digits blown up to 280x280 PNGs."""
    digits = real_mnist.test_images[:100].numpy()
    clean = 0
    for digit in digits:
        image = png(Image.fromarray(digit, "L").resize((SIDE, SIDE), Image.Resampling.BILINEAR))
        fast, full = prepare(image), prepare(image, fast=False)
        clean += fast.clean
        np.testing.assert_array_equal(fast.array, full.array)
        assert (fast.problems, fast.box) == (full.problems, full.box)
    # Only a digit whose ink reaches the canvas's border is not clean.
    assert clean >= 95


@pytest.mark.parametrize("mode, paper, ink", [
    ("L", 255, 0),  # a clean black-on-white scan or export
    ("L", 190, 40),  # grey paper, dark grey ink
    ("RGB", (250, 240, 190), (30, 40, 150)),  # blue ink on yellow, flat
    ("RGBA", (0, 0, 0, 0), (0, 0, 0, 255)),  # black ink on a transparent canvas
])
def test_other_clean_pictures_take_the_fast_path_too(mode, paper, ink):
    for image in [canvas(lines, paper=paper, ink=ink, mode=mode)
                  for lines in (scribbled_digit(np.random.default_rng(s)) for s in range(6))]:
        assert analyse(image).clean
        assert same_result(image)


def test_inverted_colours_give_the_same_digit_on_the_fast_path():
    lines = [[(140, 40), (140, 240)], [(100, 80), (140, 40)]]  # a 1 with its flag
    images = [canvas(lines), canvas(lines, paper=(255, 255, 255, 255), ink=(0, 0, 0, 255))]
    dark, light = (prepare(image) for image in images)
    assert dark.clean and light.clean and all(same_result(image) for image in images)
    # 1 - x in float32 may round the last bit differently: at most one grey level apart.
    assert np.abs(dark.array.astype(int) - light.array).max() <= 1
    assert dark.box == light.box


def test_a_huge_blob_makes_the_fast_path_estimate_the_paper():
    """Ink that fills whole neighbourhoods of the paper grid: the paper level is no longer
    provably one value, so background() is asked, and the result is still the same."""
    image = Image.new("L", (SIDE, SIDE), 0)
    ImageDraw.Draw(image).ellipse([30, 30, 250, 250], fill=255)
    _, paper = clean_ink(grayscale(image))
    assert np.ndim(paper) == 2  # the full estimate, not one level
    assert analyse(image).clean and same_result(image)
    small = canvas([[(140, 60), (140, 220)]])
    assert np.ndim(clean_ink(grayscale(small))[1]) == 0  # a thin stroke: one level


def test_whole_numbers_on_a_canvas_take_the_fast_path():
    rng = np.random.default_rng(3)
    for count in (2, 3, 4):
        width = 150 * count
        lines = [line for i in range(count)
                 for line in scribbled_digit(rng, 25 + 150 * i, 40, 100, 200)]
        image = canvas(lines, size=(width, SIDE))
        assert analyse(image).clean
        fast, full = segment_digits(image), segment_digits(image, fast=False)
        assert [c.box for c in fast] == [c.box for c in full]
        for a, b in zip(fast, full, strict=True):
            np.testing.assert_array_equal(a.array, b.array)


# ---- photos never do ---------------------------------------------------------------------

def test_photo_like_pictures_always_take_the_full_path():
    """Every condition of the photo benchmark (benchmarks/realworld.py), digits, numbers and
    non-digits: sensor noise and JPEG alone make them unclean, so its figures cannot move."""
    samples = (photolike.digit_samples("printed", 2)
               + photolike.number_samples("printed", 9)
               + [s for s in photolike.non_digit_samples(3) if s.kind != "tap"])
    assert {s.condition for s in samples} >= set(photolike.CONDITIONS)
    for sample in samples:
        assert not analyse(sample.image).clean, sample.condition


def test_the_photo_benchmarks_canvases_read_the_same():
    """The benchmark's only clean pictures, taps on a canvas and MNIST digits pasted on white
    paper, take the fast path with the full path's result."""
    taps = [s.image for s in photolike.non_digit_samples(5) if s.kind == "tap"]
    rng = np.random.default_rng(0)
    pasted = []
    for _ in range(5):  # as benchmarks/realworld.py draws them
        digit = Image.fromarray(255 - rng.integers(0, 256, (28, 28), dtype=np.uint8)
                                * (rng.random((28, 28)) < 0.3), mode="L")
        page = Image.new("L", (400, 320), 255)
        side = int(rng.integers(120, 260))
        page.paste(digit.resize((side, side), Image.Resampling.BICUBIC), (50, 30))
        pasted.append(page)
    assert all(analyse(t).clean for t in taps)
    for image in taps + pasted:
        assert same_result(image)


def noisy(image: Image.Image) -> Image.Image:
    array = np.asarray(image.convert("L")).astype(np.int16)
    array[2, 2] += 1 if array[2, 2] < 255 else -1  # one grey level, in the border
    return Image.fromarray(array.astype(np.uint8), "L")


def two_sided(image: Image.Image) -> Image.Image:
    array = np.asarray(image.convert("L")).copy()
    array[140, 20] = array[0, 0] - 1  # one paper pixel a grey level on the other side
    return Image.fromarray(array, "L")


def lit(image: Image.Image) -> Image.Image:
    array = np.asarray(image.convert("L")).astype(np.float32)
    ramp = np.linspace(0, 6, array.shape[1], dtype=np.float32)[None, :]  # a faint light drift
    return Image.fromarray(np.clip(array + ramp, 0, 255).astype(np.uint8), "L")


def ruled(image: Image.Image) -> Image.Image:
    array = np.asarray(image.convert("L")).copy()
    array[::30] = 90  # ruled lines from edge to edge
    return Image.fromarray(array, "L")


@pytest.mark.parametrize("spoil", [noisy, two_sided, lit, ruled])
def test_nearly_clean_pictures_take_the_full_path(spoil):
    rng = np.random.default_rng(5)
    for _ in range(4):  # on dark grey paper, so that paper can err to either side
        image = canvas(scribbled_digit(rng), paper=(60, 60, 60, 255))
        assert analyse(image).clean
        spoilt = spoil(image)
        assert not analyse(spoilt).clean
        assert same_result(spoilt)


def test_a_jpeg_canvas_reads_the_same_whichever_path_it_takes():
    for image in drawings(6, seed=7):
        assert same_result(png(image.convert("RGB"), "JPEG", quality=75))


# ---- unhappy paths: the same one-line problems as before ---------------------------------

@pytest.mark.parametrize("image", [
    Image.new("RGBA", (SIDE, SIDE), (0, 0, 0, 255)),  # the page's blank canvas
    Image.new("RGBA", (SIDE, SIDE), (0, 0, 0, 0)),  # blank and transparent
    Image.new("L", (SIDE, SIDE), 255),
    Image.new("L", (SIDE, SIDE), 0),  # all black
    canvas([[(140, 40), (140, 240)]], paper=(0, 0, 0, 255), ink=(8, 8, 8, 255)),  # too faint
])
def test_blank_canvases_are_the_same_error(image):
    with pytest.raises(MnistlabError, match=r"^empty image: no ink found$"):
        prepare(image)
    assert same_result(image)


@pytest.mark.parametrize("image", [
    # One or two pixels of ink: all specks, which used to leave nothing to choose from.
    Image.fromarray(np.pad(np.full((1, 1), 255, np.uint8), ((140, 139), (100, 179))), "L"),
    Image.fromarray(np.pad(np.full((1, 2), 255, np.uint8), ((140, 139), (100, 178))), "L"),
    canvas([[(140, 140), (140, 140)]]),  # a tap: one round dot
])
def test_a_tap_on_the_fast_path_is_still_not_a_digit(image):
    fast = prepare(image)
    assert fast.clean
    assert fast.problems == ["too little ink (a dot, not a drawn shape)"]
    assert same_result(image)


def test_a_tiny_canvas_is_still_too_small():
    with pytest.raises(MnistlabError, match=r"^image too small \(7x7 px"):
        prepare(Image.new("L", (7, 7), 0))


# ---- the cheaper building blocks compute what they replace --------------------------------

def test_dilate_and_erode_match_the_rank_filters():
    rng = np.random.default_rng(0)
    for _ in range(40):
        shape = (int(rng.integers(1, 30)), int(rng.integers(1, 30)))
        mask = rng.random(shape) < rng.uniform(0.05, 0.9)
        as_float = mask.astype(np.float32)
        for size in (3, 5):
            np.testing.assert_array_equal(dilate(mask, size), max_filter(as_float, size) > 0.5)
        np.testing.assert_array_equal(erode(mask), min_filter(as_float, 3) > 0.5)


def reference_line_bands(strength: np.ndarray, level: float) -> list[tuple[int, ...]]:
    """The line search the slow, obvious way: the longest run of every row of every strip."""
    h, w = strength.shape
    if min(h, w) < 48:
        return []
    thick = max(3, round(h / 80))
    bounds = np.linspace(0, w, (4 if w >= 160 else 1) + 1).astype(int)
    found = []
    for c0, c1 in pairwise(bounds):
        rows, starts, ends = runs(strength[:, c0:c1] > level)
        longest = np.zeros(h, np.int64)
        np.maximum.at(longest, rows, ends - starts)
        line = np.concatenate([[False], longest >= 0.9 * (c1 - c0), [False]])
        edges = np.diff(line.astype(np.int8))
        for r0, r1 in zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0], strict=True):
            if r1 - r0 <= thick:
                found.append((int(c0), int(c1), int(r0), int(r1)))
    return found


def test_the_line_search_finds_what_searching_every_row_finds():
    rng = np.random.default_rng(0)
    for _ in range(30):
        h, w = int(rng.integers(40, 200)), int(rng.integers(40, 300))
        strength = (rng.random((h, w)) < rng.uniform(0.0, 0.3)).astype(np.float32) * 0.5
        for _ in range(int(rng.integers(0, 5))):  # lines, some broken, some thick
            r = int(rng.integers(0, h))
            strength[r : r + int(rng.integers(1, 7)), int(rng.integers(0, 20)):] = 0.8
            strength[r, int(rng.integers(0, w))] = 0.0
        assert list(line_bands(strength, 0.1)) == reference_line_bands(strength, 0.1)


def test_the_paper_noise_shortcut_gives_the_medians():
    rng = np.random.default_rng(0)
    for n in (9, 10, 100, 101, 1000):
        for zeros in (0.3, 0.49, 0.5, 0.51, 0.7, 1.0):
            strength = np.where(rng.random(n) < zeros, 0.0, rng.random(n)).astype(np.float32)
            centre = float(np.median(strength))
            sigma = 1.4826 * float(np.median(np.abs(strength - centre)))
            assert paper_noise(strength) == (centre, sigma)


def reference_otsu(values: np.ndarray, bins: int = 256) -> float:
    hist, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))  # every value binned
    p = hist.astype(np.float64) / max(1, hist.sum())
    centres = (edges[:-1] + edges[1:]) / 2
    w0, m0 = np.cumsum(p), np.cumsum(p * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (m0[-1] * w0 - m0) ** 2 / (w0 * (1 - w0))
    between[~np.isfinite(between)] = 0
    return float(edges[int(np.argmax(between)) + 1])


def test_otsu_counting_the_zeros_gives_the_binned_threshold():
    rng = np.random.default_rng(0)
    for zeros in (0.0, 0.5, 0.9, 0.999, 1.0):
        for _ in range(5):
            values = np.where(rng.random((60, 70)) < zeros, 0.0,
                              rng.beta(2, 5, (60, 70))).astype(np.float32)
            assert otsu(values) == reference_otsu(values)


def test_the_load_benchmark_times_both_paths_side_by_side():
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "load_test.py"
    spec = importlib.util.spec_from_file_location("load_test", path)
    bench = importlib.util.module_from_spec(spec)
    sys.modules["load_test"] = bench  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    payloads = [bench.synthetic_png(k) for k in range(6)]
    result = bench.time_preprocessing(payloads, rounds=1)
    assert result["took_fast_path"] == 6  # white strokes on black: clean canvases
    assert set(result["median_ms"]) == {"decode", "fast path (prepare)",
                                        "full path (prepare, fast=False)"}
    assert all(ms > 0 for ms in result["median_ms"].values())
    assert result["full_over_fast"] > 0
