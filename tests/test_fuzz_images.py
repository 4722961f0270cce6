"""Property-based fuzzing (Hypothesis) of the image processing: random small pictures (1-64 px
a side; dots, lines, noise, alpha, every mode) and random or damaged bytes, through the image
loader, `prepare`, `segment_digits` and the server's image decoder.

The property: the only exception that escapes is the project's one-line error
(MnistlabError; the server's decoder: ApiError, a 4xx), and every call ends within a bound
(Hypothesis's deadline, generous: it catches a hang or a quadratic blow-up, not slowness).

Short by default (a few hundred examples over both fuzz files, well under a minute).
MNISTLAB_FUZZ=long runs the long profile (3,000 examples a test, 21,000 calls over both files), e.g.

    MNISTLAB_FUZZ=long python -m pytest -q tests/test_fuzz_images.py tests/test_fuzz_serve.py \
        --hypothesis-show-statistics
"""

from __future__ import annotations

import io
import os
import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from mnistlab.errors import MnistlabError
from mnistlab.predict.preprocess import load_image, prepare
from mnistlab.predict.segment import segment_digits

LONG = os.environ.get("MNISTLAB_FUZZ", "").lower() == "long"
# Examples per test: short for every run of the suite, long on request.
settings.register_profile(
    "mnistlab-short", max_examples=60, deadline=timedelta(seconds=20), derandomize=True,
    database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile(
    "mnistlab-long", max_examples=3000, deadline=timedelta(seconds=20), database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PROFILE = settings.get_profile("mnistlab-long" if LONG else "mnistlab-short")

MODES = ("L", "RGB", "RGBA", "LA", "P", "PA", "1", "I;16", "I", "F", "CMYK")
PNG_MODES = ("L", "RGB", "RGBA", "LA", "P", "1", "I;16")
KINDS = ("blank", "dots", "lines", "noise", "mixed", "dash")


@st.composite
def pictures(draw, max_side: int = 64, modes: tuple[str, ...] = MODES) -> Image.Image:
    """A small picture: a background, and dots, lines, noise or a two-pixel dash in some ink,
    maybe with an alpha channel, in one of PIL's modes."""
    width, height = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    kind = draw(st.sampled_from(KINDS))
    paper, ink = draw(st.integers(0, 255)), draw(st.integers(0, 255))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    array = np.full((height, width), paper, np.uint8)
    if kind in ("noise", "mixed"):
        spread = draw(st.integers(1, 255))
        array = np.clip(array + rng.integers(-spread, spread + 1, array.shape), 0, 255
                        ).astype(np.uint8)
    image = Image.fromarray(array, "L")
    pen = ImageDraw.Draw(image)
    if kind in ("dots", "mixed"):
        for _ in range(draw(st.integers(1, 60))):
            x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
            r = int(rng.integers(0, 3))
            pen.ellipse([x - r, y - r, x + r, y + r], fill=ink)
    if kind in ("lines", "mixed"):
        for _ in range(draw(st.integers(1, 8))):
            points = [(int(rng.integers(0, width)), int(rng.integers(0, height)))
                      for _ in range(int(rng.integers(2, 5)))]
            pen.line(points, fill=ink, width=int(rng.integers(1, 6)))
    if kind == "dash":
        y = height // 2
        pen.line([(width // 3, y), (width // 3 + 1, y)], fill=ink)
    mode = draw(st.sampled_from(modes))
    if mode in ("RGBA", "LA", "PA"):
        alpha = Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8)
                                if draw(st.booleans()) else
                                np.full((height, width), draw(st.integers(0, 255)), np.uint8))
        colour = image.convert("RGBA" if mode != "LA" else "LA")
        colour.putalpha(alpha)
        return colour.convert(mode) if mode == "PA" else colour
    if mode == "I;16":
        return Image.fromarray(array.astype(np.uint16) * 257) if kind == "noise" \
            else image.convert("I").convert("I;16")
    return image.convert(mode)


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG" and image.mode not in ("L", "RGB", "CMYK"):
        image = image.convert("RGB")
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@st.composite
def image_bytes(draw) -> bytes:
    """PNG or JPEG bytes: a good small picture, one damaged (bytes changed, cut short), or
    random bytes."""
    kind = draw(st.sampled_from(("good", "damaged", "cut", "random")))
    if kind == "random":
        return draw(st.binary(max_size=600))
    data = encoded(draw(pictures(modes=PNG_MODES)), draw(st.sampled_from(("PNG", "JPEG"))))
    if kind == "cut":
        return data[: draw(st.integers(0, len(data)))]
    if kind == "damaged":
        data = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    return data


def only_mnistlab_errors(call) -> None:
    try:
        call()
    except MnistlabError as e:
        message = str(e)
        assert message and "\n" not in message, f"not one line: {message!r}"


@PROFILE
@given(pictures())
def test_prepare_raises_only_mnistlab_errors(image):
    only_mnistlab_errors(lambda: prepare(image))


@PROFILE
@given(pictures())
def test_segment_digits_raises_only_mnistlab_errors(image):
    only_mnistlab_errors(lambda: segment_digits(image))


@PROFILE
@given(image_bytes(), st.sampled_from((".png", ".jpg", "")))
def test_load_image_raises_only_mnistlab_errors(data, suffix):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"picture{suffix}"
        path.write_bytes(data)
        only_mnistlab_errors(lambda: prepare(load_image(path)))


def test_the_two_pixel_dash_found_by_fuzzing():
    """The example that gave a 500 (issue 20): segment_digits reads it without an error."""
    image = Image.new("L", (28, 28), 255)
    image.putpixel((10, 14), 0)
    image.putpixel((11, 14), 0)
    assert len(segment_digits(image)) == 1
