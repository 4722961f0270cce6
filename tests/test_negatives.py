"""The non-digit generator (mnistlab.notadigit.negatives): seeded, in MNIST's form, cached."""

from __future__ import annotations

import numpy as np
import pytest

from mnistlab.data.framing import centre_of_mass
from mnistlab.notadigit import negatives


@pytest.fixture(scope="module")
def bank() -> tuple[np.ndarray, np.ndarray]:
    return negatives.generate(300, seed=5)


def test_the_same_seed_draws_the_same_images(bank):
    images, kinds = negatives.generate(300, seed=5)
    assert np.array_equal(images, bank[0]) and np.array_equal(kinds, bank[1])
    other, _ = negatives.generate(300, seed=6)
    assert not np.array_equal(other, bank[0])
    holdout, _ = negatives.generate(300, seed=5, variant="holdout")
    assert not np.array_equal(holdout, bank[0])


def test_images_are_in_mnist_form(bank):
    images, kinds = bank
    assert images.shape == (300, 28, 28) and images.dtype == np.uint8
    assert kinds.shape == (300,) and set(kinds.tolist()) == set(range(len(negatives.KINDS)))
    # White ink on black: the border is black, the strongest ink is full white.
    assert (images.max(axis=(1, 2)) == 255).all()
    edge = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], 1)
    assert np.mean(edge == 0) > 0.97
    # Centre of mass at (14, 14): whole-pixel shifts leave up to half a pixel, rounding to
    # uint8 and ink cut at the frame's edge a little more.
    centres = np.array([centre_of_mass(im.astype(np.float64)) for im in images])
    assert np.abs(centres - 14.0).max() <= 1.0
    assert np.abs(centres.mean(0) - 14.0).max() < 0.1
    # The longer side of the ink's box is about 20 px, as in MNIST.
    sides = []
    for im in images:
        rows, cols = np.nonzero(im > 25)
        sides.append(max(np.ptp(rows), np.ptp(cols)) + 1)
    assert 18 <= np.median(sides) <= 21


def test_letters_that_look_like_digits_are_left_out():
    assert not set(negatives.LETTERS) & set("0123456789OoQDIlijJZzSsBbGgq")
    assert set(negatives.LETTERS).isdisjoint(negatives.EXCLUDED)


def test_no_liberation_fonts_the_benchmark_uses():
    for variant in negatives.STYLES:
        assert not any("liberation" in f.lower() for f in negatives.fonts_used(variant))
    assert set(negatives.STYLES["train"].fonts).isdisjoint(negatives.STYLES["holdout"].fonts)


def test_without_dejavu_fonts_pil_s_own_font_is_used_and_said(monkeypatch):
    monkeypatch.setattr(negatives, "_font_dirs", lambda: [])
    negatives.find_fonts.cache_clear()
    try:
        assert negatives.fonts_used() == ["PIL built-in (load_default)"]
        rng = np.random.default_rng(0)
        ink = negatives.draw_one("letter", rng, negatives.STYLES["train"])
        assert ink.max() > 0.5  # something was drawn
        assert "PIL built-in" in negatives.info(10, 0)["fonts"][0]
    finally:
        negatives.find_fonts.cache_clear()


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="variant"):
        negatives.generate(4, variant="test")


def test_the_bank_is_cached_in_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(negatives, "_BANKS", {})
    images, kinds = negatives.load_bank(40, seed=2)
    path = negatives.cache_path(40, 2, "train")
    assert path.is_file() and path.is_relative_to(tmp_path / "mnistlab" / "negatives")
    assert not images.flags.writeable  # shared between runs: read-only

    def no_drawing(*args, **kwargs):
        raise AssertionError("drew again instead of reading the cache")

    monkeypatch.setattr(negatives, "_BANKS", {})
    monkeypatch.setattr(negatives, "generate", no_drawing)
    again, again_kinds = negatives.load_bank(40, seed=2)
    assert np.array_equal(again, images) and np.array_equal(again_kinds, kinds)


def test_a_damaged_cache_file_is_drawn_again(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(negatives, "_BANKS", {})
    path = negatives.cache_path(30, 3, "train")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an npz file")
    images, _ = negatives.load_bank(30, seed=3)
    assert np.array_equal(images, negatives.generate(30, seed=3)[0])
    with np.load(path) as saved:  # and the cache now holds the good copy
        assert np.array_equal(saved["images"], images)


def test_printed_digits_are_labelled_and_in_mnist_form():
    images, labels = negatives.generate(200, seed=3, variant="printed")
    again, same = negatives.generate(200, seed=3, variant="printed")
    assert np.array_equal(images, again) and np.array_equal(labels, same)
    assert images.shape == (200, 28, 28) and images.dtype == np.uint8
    assert set(labels.tolist()) == set(range(10))
    assert (images.max(axis=(1, 2)) == 255).all()
    centres = np.array([centre_of_mass(im.astype(np.float64)) for im in images])
    assert np.abs(centres.mean(0) - 14.0).max() < 0.15
    # Not the letters bank: another variant, other images.
    letters, _ = negatives.generate(200, seed=3)
    assert not np.array_equal(images, letters)
    info = negatives.info(200, 3, "printed")
    assert info["digits"] == "0123456789" and "letters" not in info
    assert not any("liberation" in f.lower() for f in info["fonts"])


def test_strokes_are_three_to_six_separate_pen_strokes(monkeypatch):
    counts = []
    real_line = negatives._line

    def counting_line(draw, points, width):
        counts[-1] += 1
        assert points.shape[1] == 2 and len(points) >= 2
        inside = ((points >= 0) & (points <= negatives.CANVAS)).all(1)
        assert inside.any()  # on the canvas (an arc may run off its edge, as off a page)
        real_line(draw, points, width)

    monkeypatch.setattr(negatives, "_line", counting_line)
    rng = np.random.default_rng(3)
    for _ in range(60):
        counts.append(0)
        ink = negatives.draw_one("strokes", rng, negatives.STYLES["train"])
        assert ink.any()
    assert min(counts) == 3 and max(counts) == 6
