"""The held-out picture set: families, sizes, and `build(seed, sizes, sources)`.

Every picture is made from `numpy.random.default_rng([seed, family number, index])`, so a
family's pictures do not change when another family's size does. See README.md in this
folder for what each family is, why it shares nothing with training, and the table of
non-digits that truly read as a digit (kept in the data, left out of the rejection figure).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image
from scipy import ndimage

from . import camera, ink

DIGIT_FAMILIES = ("optdigits", "printed", "mnist-test-photo")
NUMBER_FAMILIES = ("number-optdigits", "number-printed")
NON_DIGIT_FAMILIES = ("latin", "greek", "cyrillic", "spiral", "outline-rect", "face", "arrow",
                      "check", "pen-symbol", "texture", "fashion")
FAMILIES = DIGIT_FAMILIES + NUMBER_FAMILIES + NON_DIGIT_FAMILIES

LATIN = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
GREEK = "ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩαβγδεζηθικλμνξοπρστυφχψω"
CYRILLIC = "АБВГДЕЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯабвгдежзийклмнопрстуфхцчшщъыьэюя"
# Letters that truly read as a digit: drawn (they are in the data) but left out of the
# rejection figure, and reported apart. README.md has the table and the reasons.
READS_AS = {
    "latin": {"O": "0", "o": "0", "D": "0", "Q": "0", "I": "1", "l": "1", "i": "1",
              "Z": "2", "z": "2", "S": "5", "s": "5", "G": "6", "b": "6", "B": "8",
              "g": "9", "q": "9"},
    "greek": {"Ο": "0", "ο": "0", "Θ": "0", "θ": "0", "Ι": "1", "ι": "1", "Ζ": "2",
              "δ": "6", "Β": "8"},
    "cyrillic": {"О": "0", "о": "0", "З": "3", "з": "3", "Э": "3", "э": "3", "Ч": "4",
                 "ч": "4", "Б": "6", "б": "6", "Ь": "6", "ь": "6", "Ъ": "6", "ъ": "6",
                 "В": "8", "в": "8"},
}
ALPHABETS = {"latin": LATIN, "greek": GREEK, "cyrillic": CYRILLIC}
FASHION_COLOURS = ((30, 35, 70), (25, 25, 28), (150, 30, 35), (85, 90, 45), (60, 90, 140),
                   (110, 70, 40), (200, 180, 140), (120, 120, 125))


@dataclass(frozen=True)
class Sample:
    image: Image.Image  # RGB
    text: str  # the digits shown ("7", "2026"); "" for a non-digit
    family: str  # one of FAMILIES
    condition: str  # one of camera.CONDITIONS
    detail: str  # what exactly: the letter, the shape, the font, the optdigits index
    reads_as: str = ""  # a non-digit that truly reads as this digit (see READS_AS)

    @property
    def group(self) -> str:
        if self.family in DIGIT_FAMILIES:
            return "digit"
        return "number" if self.family in NUMBER_FAMILIES else "non-digit"


@dataclass(frozen=True)
class Sizes:
    optdigits: int | None = None  # None: all 1,797
    printed: int = 300
    mnist_test_photo: int = 300
    number_optdigits: int = 200
    number_printed: int = 100
    per_non_digit_family: int = 60

    def of(self, family: str, available: int) -> int:
        if family == "optdigits":
            return available if self.optdigits is None else min(self.optdigits, available)
        if family in NON_DIGIT_FAMILIES:
            return self.per_non_digit_family
        return int(getattr(self, family.replace("-", "_")))


FULL = Sizes()
SMALL = Sizes(optdigits=200, printed=60, mnist_test_photo=60, number_optdigits=40,
              number_printed=30, per_non_digit_family=16)


@dataclass
class Sources:
    """Images the set is made from (loaded once; see load_sources)."""

    optdigits: tuple[np.ndarray, np.ndarray]  # (1797, 8, 8) counts 0-16, labels
    mnist_test: tuple[np.ndarray, np.ndarray] | None = None  # uint8 (N, 28, 28), labels
    fashion_test: tuple[np.ndarray, np.ndarray] | None = None
    notes: list[str] = field(default_factory=list)


def load_optdigits() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 UCI optdigits scans, bundled with scikit-learn (no download)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images.astype(np.float32), digits.target.astype(np.int64)


def load_sources(mnist_test: tuple[np.ndarray, np.ndarray] | None = None) -> Sources:
    """optdigits (scikit-learn), MNIST test (given, else loaded) and Fashion-MNIST test
    (Debian's dataset-fashion-mnist, or wherever mnistlab.data finds it)."""
    from mnistlab.data.dataset import load_dataset

    if mnist_test is None:
        mnist = load_dataset("mnist", download=False)
        mnist_test = (mnist.test_images.numpy(), mnist.test_labels.numpy())
    fashion = load_dataset("fashion-mnist", download=False)
    return Sources(load_optdigits(), mnist_test,
                   (fashion.test_images.numpy(), fashion.test_labels.numpy()))


def sample_rng(seed: int, family: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, FAMILIES.index(family), index])


def condition_of(family: str, index: int) -> str:
    """Conditions taken in turn, each family starting elsewhere in the list."""
    conditions = camera.CONDITIONS
    return conditions[(index + 5 * FAMILIES.index(family)) % len(conditions)]


# ---- one picture per family -------------------------------------------------------------------

Rng = np.random.Generator
Maker = Callable[[Rng, int, Sources, str, int], Sample]  # rng, index, sources, condition, seed


def _letter(family: str) -> Maker:
    def make(rng: Rng, i: int, src: Sources, condition: str, seed: int) -> Sample:
        alphabet = ALPHABETS[family]  # every letter in turn, in an order of the seed's
        order = np.random.default_rng([seed, 7, FAMILIES.index(family)]).permutation(
            len(alphabet))
        char = alphabet[order[i % len(alphabet)]]
        mask, font_name = ink.glyph(char, rng)
        return Sample(camera.photograph(mask, rng, condition), "", family, condition,
                      f"{char} ({font_name})", READS_AS[family].get(char, ""))
    return make


def _shape(family: str, skeleton_of: Callable, closed: bool = False) -> Maker:
    def make(rng: Rng, i: int, src: Sources, condition: str, seed: int) -> Sample:
        skeleton, name = skeleton_of(rng)
        flags = tuple([closed] * len(skeleton)) if closed else None
        if family == "pen-symbol":  # always by hand: the other stroke model is the point
            mask, pen = ink.crop(ink.hand(skeleton, rng, rng.uniform(4, 10))), "hand"
        else:
            mask, pen = ink.draw(skeleton, rng, flags)
        return Sample(camera.photograph(mask, rng, condition), "", family, condition,
                      f"{name}, {pen}")
    return make


def _texture(rng: Rng, i: int, src: Sources, condition: str, seed: int) -> Sample:
    mask, name = ink.texture(rng)
    return Sample(camera.photograph(mask, rng, condition), "", "texture", condition, name)


FASHION_NAMES = ("T-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                 "sneaker", "bag", "ankle boot")


def _fashion(rng: Rng, i: int, src: Sources, condition: str, seed: int) -> Sample:
    if src.fashion_test is None:
        raise ValueError("the fashion family needs Fashion-MNIST (Sources.fashion_test)")
    images, labels = src.fashion_test
    k = int(rng.integers(len(labels)))
    f = ink.upsample_mnist(images[k], 140)  # brightness of the item, 0 = background
    alpha = np.clip(ndimage.gaussian_filter(f, 1.5) * 6, 0, 1)  # smooth outline, no stairs
    colour = np.array(FASHION_COLOURS[int(rng.integers(len(FASHION_COLOURS)))], np.float32)
    rgb = np.clip(colour * (0.55 + 0.7 * f)[..., None], 0, 255)
    return Sample(camera.photograph(alpha, rng, condition, rgb=rgb), "", "fashion", condition,
                  f"{FASHION_NAMES[int(labels[k])]} (test #{k})")


def _optdigit(rng: Rng, i: int, src: Sources, condition: str, seed: int) -> Sample:
    images, labels = src.optdigits
    mask = ink.upsample_optdigit(images[i])
    return Sample(camera.photograph(mask, rng, condition), str(int(labels[i])), "optdigits",
                  condition, f"optdigits #{i}")


def _printed(rng: Rng, i: int, src: Sources, condition: str, seed: int) -> Sample:
    digit = str(i % 10)
    mask, font_name = ink.glyph(digit, rng, font_choice=i // 10)
    return Sample(camera.photograph(mask, rng, condition), digit, "printed", condition,
                  font_name)


def _mnist_photo(rng: Rng, i: int, src: Sources, condition: str, seed: int) -> Sample:
    if src.mnist_test is None:
        raise ValueError("the mnist-test-photo family needs MNIST test images")
    images, labels = src.mnist_test
    k = int(rng.integers(len(labels)))
    return Sample(camera.photograph(ink.upsample_mnist(images[k]), rng, condition),
                  str(int(labels[k])), "mnist-test-photo", condition, f"MNIST test #{k}")


def _number_optdigits(rng: Rng, i: int, src: Sources, condition: str, seed: int) -> Sample:
    images, labels = src.optdigits
    text = "".join(str(int(d)) for d in rng.integers(0, 10, int(rng.integers(2, 7))))
    picks = [int(rng.choice(np.nonzero(labels == int(d))[0])) for d in text]
    line = ink.number_line([ink.upsample_optdigit(images[k]) for k in picks], rng, False)
    return Sample(camera.photograph(line, rng, condition), text, "number-optdigits", condition,
                  "optdigits #" + ",".join(map(str, picks)))


def _number_printed(rng: Rng, i: int, src: Sources, condition: str, seed: int) -> Sample:
    text = "".join(str(int(d)) for d in rng.integers(0, 10, int(rng.integers(2, 7))))
    mask, font_name = ink.glyph(text, rng)
    return Sample(camera.photograph(mask, rng, condition), text, "number-printed", condition,
                  font_name)


MAKERS: dict[str, Maker] = {
    "optdigits": _optdigit, "printed": _printed, "mnist-test-photo": _mnist_photo,
    "number-optdigits": _number_optdigits, "number-printed": _number_printed,
    "latin": _letter("latin"), "greek": _letter("greek"), "cyrillic": _letter("cyrillic"),
    "spiral": _shape("spiral", ink.spiral), "outline-rect": _shape("outline-rect",
                                                                   ink.outline_rect, True),
    "face": _shape("face", ink.face), "arrow": _shape("arrow", ink.arrow),
    "check": _shape("check", ink.check), "pen-symbol": _shape("pen-symbol", ink.symbol),
    "texture": _texture, "fashion": _fashion,
}
assert set(MAKERS) == set(FAMILIES)


def iter_samples(seed: int, sizes: Sizes = FULL, sources: Sources | None = None,
                 families: Sequence[str] = FAMILIES) -> Iterator[Sample]:
    """The held-out pictures of `families` for `seed`, in FAMILIES order, one at a time (the
    full set does not fit in memory as pictures)."""
    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown families {sorted(unknown)} (known: {', '.join(FAMILIES)})")
    if sources is None:
        sources = load_sources()
    n_opt = len(sources.optdigits[1])
    for family in (f for f in FAMILIES if f in families):
        count = sizes.of(family, n_opt)
        if family == "optdigits" and count < n_opt:  # a seeded subset, in index order
            indices = np.sort(np.random.default_rng([seed, 99]).choice(n_opt, count, False))
        else:
            indices = np.arange(count)
        for i in indices:
            i = int(i)
            condition = condition_of(family, i)
            sample = MAKERS[family](sample_rng(seed, family, i), i, sources, condition, seed)
            yield replace(sample, condition=condition)


def build(seed: int, sizes: Sizes = FULL, sources: Sources | None = None,
          families: Sequence[str] = FAMILIES) -> list[Sample]:
    """iter_samples as a list (for small sets)."""
    return list(iter_samples(seed, sizes, sources, families))


def count(sizes: Sizes, families: Sequence[str] = FAMILIES, optdigits: int = 1797) -> int:
    return sum(sizes.of(f, optdigits) for f in families)
