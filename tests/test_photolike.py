"""The photo-like test pictures: deterministic, what they say they are, and readable."""

from __future__ import annotations

import numpy as np
import pytest
from benchmarks import devset as photolike
from PIL import ImageFont

from mnistlab.predict import prepare, segment_digits


def fake_mnist(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Stand-ins for MNIST test digits: a thick vertical bar, labelled by position."""
    images = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        images[i, 4:24, 10 + i % 5 : 14 + i % 5] = 255
    return images, np.arange(n) % 10


def pixels(sample: photolike.Sample) -> np.ndarray:
    return np.asarray(sample.image)


def test_same_seed_same_pictures_other_seed_other_pictures():
    a = photolike.digit_samples("printed", 1, seed=3, conditions=("gradient", "ruled"))
    b = photolike.digit_samples("printed", 1, seed=3, conditions=("gradient", "ruled"))
    c = photolike.digit_samples("printed", 1, seed=4, conditions=("gradient", "ruled"))
    for x, y, z in zip(a, b, c, strict=True):
        np.testing.assert_array_equal(pixels(x), pixels(y))
        assert x.image.size != z.image.size or not np.array_equal(pixels(x), pixels(z))


def test_every_condition_gives_an_rgb_photo_with_its_digit():
    samples = photolike.digit_samples("printed", 2)
    assert [s.condition for s in samples] == [c for c in photolike.CONDITIONS for _ in range(2)]
    assert [s.text for s in samples[:2]] == ["0", "1"]
    for s in samples:
        assert s.image.mode == "RGB" and s.kind == "printed"
        gray = pixels(s).mean(2)
        assert gray.min() < 0.7 * np.median(gray)  # there is ink darker than the paper
    small = [s for s in samples if s.condition == "small"]
    assert all(s.image.size == (1600, 1200) for s in small)


def test_gradient_and_shadow_really_change_the_light():
    for condition in ("gradient", "shadow"):
        (s,) = photolike.digit_samples("printed", 1, conditions=(condition,))
        gray = pixels(s).mean(2)
        corners = [gray[:10, :10].mean(), gray[:10, -10:].mean(), gray[-10:, :10].mean(),
                   gray[-10:, -10:].mean()]
        assert max(corners) - min(corners) > 40, condition


def test_handwritten_digits_come_from_the_given_images_and_need_them():
    images, labels = fake_mnist()
    samples = photolike.digit_samples("handwritten", 1, seed=0, mnist_images=images,
                                      mnist_labels=labels, conditions=("clean",))
    assert samples[0].text in {str(d) for d in range(10)}
    with pytest.raises(ValueError, match="MNIST test images"):
        photolike.digit_samples("handwritten", 1)
    with pytest.raises(ValueError, match="unknown condition"):
        photolike.digit_samples("printed", 1, conditions=("fog",))


def test_numbers_have_2_to_6_digits_and_segment_into_as_many():
    samples = photolike.number_samples("printed", 6, seed=1)
    assert all(2 <= len(s.text) <= 6 and s.text.isdigit() for s in samples)
    assert len({s.condition for s in samples}) == 6
    found = [len(segment_digits(s.image)) for s in samples]
    assert sum(f == len(s.text) for f, s in zip(found, samples, strict=True)) >= 5
    images, labels = fake_mnist()
    hand = photolike.number_samples("handwritten", 2, mnist_images=images, mnist_labels=labels)
    assert all(s.kind == "number-handwritten" for s in hand)


def test_non_digits_are_labelled_and_avoid_digit_like_letters():
    samples = photolike.non_digit_samples(2, seed=0)
    assert [s.kind for s in samples] == [k for k in photolike.NON_DIGIT_KINDS for _ in range(2)]
    assert all(s.text == "" for s in samples)
    assert not set(photolike.LETTERS) & set("OoQDIlijJLTtZzESsGbBgqahyAcCeUuVv")
    taps = [s for s in samples if s.kind == "tap"]
    for tap in taps:  # a tap is a dot: the input checks call it not a digit
        assert prepare(tap.image).problems


def test_missing_fonts_fall_back_to_pils_own(monkeypatch):
    monkeypatch.setattr(photolike, "FONT_DIRS", ("/no/such/folder",))
    assert photolike.find_fonts() == []
    assert "built-in font" in photolike.fonts_used()
    fnt = photolike.font(np.random.default_rng(0), 60)
    assert isinstance(fnt, ImageFont.FreeTypeFont | ImageFont.ImageFont)
    (s,) = photolike.digit_samples("printed", 1, conditions=("clean",))
    assert s.image.mode == "RGB"


@pytest.mark.slow
@pytest.mark.real_data
def test_default_run_reads_photo_like_digits(real_mnist, real_default_run):
    """A small version of benchmarks/realworld.py: the default run on photo-like printed and
    handwritten digits under every condition, with the local preprocessing."""
    from mnistlab.checkpoint import load_model
    from mnistlab.predict import predict

    model, normalizer, _ = load_model(real_default_run)
    x, y = real_mnist.test_images.numpy(), real_mnist.test_labels.numpy()
    samples = (photolike.digit_samples("printed", 3, seed=7)
               + photolike.digit_samples("handwritten", 3, seed=7, mnist_images=x,
                                         mnist_labels=y))
    arrays = np.stack([prepare(s.image).array for s in samples])
    labels = [p.label for p in predict(model, normalizer, arrays)]
    right = sum(str(label) == s.text for label, s in zip(labels, samples, strict=True))
    print(f"photo-like digits read right: {right}/{len(samples)}")
    assert right >= 0.9 * len(samples)
