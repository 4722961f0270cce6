"""Images that are not digits, in MNIST's form, for teaching a model to say "not a digit".

`generate(n, seed)` draws n seeded 28x28 uint8 images, white on black and framed like MNIST
(the ink's longer side scaled to 20 px, centre of mass at (14, 14), with the same helpers
that frame a user's photo: mnistlab.data.framing.frame), from these
kinds:

    letter    Latin letters that do not look like digits (LETTERS; EXCLUDED says why the
              others are left out), rendered from DejaVu fonts, slanted, thinned or thickened
    scribble  smooth random curves through 6-10 points, or several crossing strokes
    zigzag    4-9 sharp turns (W, M, sawtooth)
    shape     star, triangle, heart, arrow, diagonal cross, filled square or diamond,
              crescent; outlines of circles and ellipses are left out (they are zeros)
    blob      a filled disc, ellipse or lumpy polygon: what a tap on the drawing page
              becomes once it is scaled to 20 px
    dots      2-7 separate dots
    noise     random speckle, smoothed or not
    bars      one thick bar within 30 degrees of horizontal (a vertical one is a 1), or
              hatching: 2-5 parallel strokes, a grid
    strokes   3-6 unrelated pen strokes (straight, bent at sharp corners, or arcs), each
              wherever it falls: no symbol in particular, so that the model learns to doubt
              any arrangement of strokes that is not a digit (added in v3, chosen on
              development data: docs/not-a-digit.md)

`variant="holdout"` draws from other fonts, stroke widths and point counts: it measures how
well rejection carries over to non-digits the model has not seen the like of.

`variant="printed"` draws the one kind of positive that training adds next to these
negatives: printed digits 0-9 from the same DejaVu fonts (slanted, turned, thinned or
thickened like the letters), with their digit as the label. MNIST holds only handwriting, so
a model trained on it alone reads some printed glyphs wrong (a thin serif 6 as a 5);
docs/not-a-digit.md has the measurements. The benchmark's
non-digits (benchmarks/devset.py) come from Liberation fonts, which nothing here uses.

Fonts: matplotlib's bundled DejaVu fonts (a dependency, so the same files everywhere), else
the system's DejaVu fonts, else PIL's built-in font; `info()` records which.

A bank of a few thousand images takes about a second to draw, so `load_bank` caches it in
the user cache (`$XDG_CACHE_HOME/mnistlab/negatives/`), keyed by VERSION, variant, size,
seed and the fonts used.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from mnistlab.data.framing import frame, to_uint8

VERSION = 3  # bump whenever the images change: old caches are then ignored
CANVAS = 64  # drawing size before framing (strokes 3-9 px here ~ MNIST's 1.5-3 px at 28x28)

# Letters whose shapes a digit can take in someone's handwriting are left out, so that the
# model is never taught that a digit-like shape is "not a digit":
EXCLUDED = {
    "O": "0", "o": "0", "Q": "0", "D": "0", "C": "0 (open)", "c": "0 (open)", "U": "0 (open)",
    "I": "1", "l": "1", "i": "1", "j": "1", "J": "1", "T": "7", "r": "7 / 1",
    "Z": "2", "z": "2", "S": "5", "s": "5", "B": "8", "b": "6", "G": "6", "e": "6 / 2",
    "g": "9", "q": "9", "a": "9 / 2", "d": "9 / 6", "y": "4 / 9", "h": "4", "t": "4 / +",
    "A": "4", "L": "4 / 7 (rotated)", "P": "9 (mirrored)", "u": "4 / 0", "n": "0 / 7",
}
LETTERS = "EFHKMNRVWXYfkmpvwx"
assert not set(LETTERS) & set(EXCLUDED)

KINDS = ("letter", "scribble", "zigzag", "shape", "blob", "dots", "noise", "bars", "strokes")


def kinds_named(text: str) -> list[str]:
    """The families in a comma-separated option value ("letter,shape"; "" names none)."""
    return [name for name in text.split(",") if name]
# Share of each kind in a bank: letters and strokes are what people draw by mistake.
WEIGHTS = (0.24, 0.13, 0.06, 0.13, 0.08, 0.05, 0.04, 0.08, 0.19)

_TRAIN_FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf",
                "DejaVuSerif-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSansMono.ttf")
_HOLDOUT_FONTS = ("DejaVuSerif-Italic.ttf", "DejaVuSansMono-Bold.ttf",
                  "DejaVuSans-BoldOblique.ttf", "DejaVuSerif-BoldItalic.ttf")
_SYSTEM_FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu",
                     "/usr/share/fonts/TTF", "/usr/local/share/fonts", "/Library/Fonts",
                     os.path.expanduser("~/Library/Fonts"), "C:/Windows/Fonts")


@dataclass(frozen=True)
class Style:
    """Generator parameters: the training and the held-out variants differ in all of them."""

    fonts: tuple[str, ...]
    stroke: tuple[int, int]  # pen width range at CANVAS size
    scribble_points: tuple[int, int]
    zigzag_turns: tuple[int, int]
    slant: float  # letters: max shear
    rotate: float  # letters and shapes: max rotation, degrees


STYLES = {
    "train": Style(_TRAIN_FONTS, (2, 8), (6, 10), (4, 8), 0.25, 12.0),
    "holdout": Style(_HOLDOUT_FONTS, (4, 10), (7, 12), (5, 9), 0.35, 18.0),
    "printed": Style(_TRAIN_FONTS, (2, 8), (6, 10), (4, 8), 0.15, 8.0),  # digits: see above
}


def _font_dirs() -> list[Path]:
    dirs = []
    try:
        import matplotlib

        dirs.append(Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf")
    except ImportError:  # a declared dependency, but be robust
        pass
    return dirs + [Path(d) for d in _SYSTEM_FONT_DIRS]


@cache
def find_fonts(names: tuple[str, ...]) -> tuple[str, ...]:
    """Paths of the first copy of each font file found; an empty tuple if none is."""
    found = []
    for name in names:
        for folder in _font_dirs():
            if (folder / name).is_file():
                found.append(str(folder / name))
                break
    return tuple(found)


@cache
def _font(path: str | None, size: int) -> Any:
    if path is None:  # PIL's built-in scalable font (Pillow >= 10.1), else its bitmap one
        try:
            return ImageFont.load_default(size=size)
        except TypeError:
            return ImageFont.load_default()
    return ImageFont.truetype(path, size)


def fonts_used(variant: str = "train") -> list[str]:
    paths = find_fonts(STYLES[variant].fonts)
    return [Path(p).name for p in paths] if paths else ["PIL built-in (load_default)"]


# ---- drawing: each function draws one non-digit on a CANVAS x CANVAS black "L" image -------
Draw = Callable[[ImageDraw.ImageDraw, np.random.Generator, Style], None]


def _pen(rng: np.random.Generator, style: Style) -> int:
    return int(rng.integers(style.stroke[0], style.stroke[1] + 1))


def _points(rng: np.random.Generator, n: int, margin: float = 8) -> np.ndarray:
    return rng.uniform(margin, CANVAS - margin, size=(n, 2))


def _smooth(points: np.ndarray, rounds: int = 3) -> np.ndarray:
    """Chaikin corner cutting: a polyline becomes a smooth curve through its neighbourhood."""
    for _ in range(rounds):
        a, b = points[:-1], points[1:]
        cut = np.empty((2 * len(a), 2))
        cut[0::2], cut[1::2] = 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b
        points = np.vstack([points[:1], cut, points[-1:]])
    return points


def _line(draw: ImageDraw.ImageDraw, points: np.ndarray, width: int) -> None:
    draw.line([tuple(p) for p in points], fill=255, width=width, joint="curve")
    r = width / 2  # round caps, like a pen
    for x, y in (points[0], points[-1]):
        draw.ellipse((x - r, y - r, x + r, y + r), fill=255)


def _transform(points: np.ndarray, rng: np.random.Generator, degrees: float) -> np.ndarray:
    angle = math.radians(rng.uniform(-degrees, degrees))
    c, s = math.cos(angle), math.sin(angle)
    centre = CANVAS / 2
    return (points - centre) @ np.array([[c, s], [-s, c]]) + centre


def draw_scribble(draw: ImageDraw.ImageDraw, rng: np.random.Generator, style: Style) -> None:
    if rng.random() < 0.7:  # one long smooth scribble
        n = int(rng.integers(*style.scribble_points, endpoint=True))
        _line(draw, _smooth(_points(rng, n)), _pen(rng, style))
    else:  # a few crossing strokes, as when something is crossed out
        width = _pen(rng, style)
        for _ in range(int(rng.integers(3, 7))):
            _line(draw, _smooth(_points(rng, 3), 2), width)


def draw_zigzag(draw: ImageDraw.ImageDraw, rng: np.random.Generator, style: Style) -> None:
    turns = int(rng.integers(*style.zigzag_turns, endpoint=True))
    x = np.linspace(8, CANVAS - 8, turns + 1) + rng.uniform(-2, 2, turns + 1)
    low, high = rng.uniform(8, 22), rng.uniform(42, 56)
    y = np.where(np.arange(turns + 1) % 2 == 0, low, high) + rng.uniform(-4, 4, turns + 1)
    points = np.stack([x, y], 1)
    if rng.random() < 0.5:  # upright or lying
        points = points[:, ::-1]
    _line(draw, _transform(points, rng, style.rotate), _pen(rng, style))


def _star(rng: np.random.Generator) -> np.ndarray:
    tips = int(rng.integers(5, 8))
    angles = np.arange(2 * tips) * math.pi / tips + rng.uniform(0, math.pi)
    radii = np.where(np.arange(2 * tips) % 2 == 0, 26, rng.uniform(9, 14))
    return np.stack([np.cos(angles) * radii, np.sin(angles) * radii], 1) + CANVAS / 2


def _heart() -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, 60)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return np.stack([x, y], 1) * 1.5 + CANVAS / 2


def _triangle(rng: np.random.Generator) -> np.ndarray:
    angles = math.radians(-90) + np.array([0, 2, 4]) * math.pi / 3 + rng.uniform(-0.4, 0.4, 3)
    return np.stack([np.cos(angles), np.sin(angles)], 1) * 26 + CANVAS / 2


def draw_shape(draw: ImageDraw.ImageDraw, rng: np.random.Generator, style: Style) -> None:
    width = _pen(rng, style)
    kind = int(rng.integers(0, 7))
    filled = rng.random() < 0.4
    if kind in (0, 1, 2):
        outline = (_star(rng), _heart(), _triangle(rng))[kind]
        outline = _transform(outline, rng, style.rotate)
        if filled:
            draw.polygon([tuple(p) for p in outline], fill=255)
        else:
            _line(draw, np.vstack([outline, outline[:1]]), width)
    elif kind == 3:  # arrow, within 50 degrees of horizontal (an upright one is close to 1)
        angle = rng.uniform(-50, 50) + (180 if rng.random() < 0.5 else 0)
        a = math.radians(angle)
        d = np.array([math.cos(a), math.sin(a)])
        tail, tip = CANVAS / 2 - 24 * d, CANVAS / 2 + 24 * d
        _line(draw, np.stack([tail, tip]), width)
        for side in (-1, 1):
            b = a + math.pi + side * math.radians(rng.uniform(25, 45))
            _line(draw, np.stack([tip, tip + 14 * np.array([math.cos(b), math.sin(b)])]), width)
    elif kind == 4:  # diagonal cross (an upright + is too close to a 4)
        r = rng.uniform(18, 26)
        for sign in (-1, 1):
            end = np.array([r, sign * r * rng.uniform(0.7, 1.3)])
            _line(draw, np.stack([CANVAS / 2 - end, CANVAS / 2 + end]), width)
    elif kind == 5:  # filled square or diamond
        square = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * rng.uniform(14, 24)
        square = _transform(square + CANVAS / 2, rng, 45)
        draw.polygon([tuple(p) for p in square], fill=255)
    else:  # crescent: a disc with a bite taken out
        r = rng.uniform(18, 26)
        c = CANVAS / 2
        draw.ellipse((c - r, c - r, c + r, c + r), fill=255)
        off = rng.uniform(0.3, 0.5) * r * np.array([math.cos(a := rng.uniform(0, 6.3)),
                                                    math.sin(a)])
        draw.ellipse((c + off[0] - r, c + off[1] - r, c + off[0] + r, c + off[1] + r), fill=0)


def draw_blob(draw: ImageDraw.ImageDraw, rng: np.random.Generator, style: Style) -> None:
    c = CANVAS / 2
    if rng.random() < 0.5:  # disc or ellipse: a tap
        rx, ry = rng.uniform(8, 26), rng.uniform(8, 26)
        draw.ellipse((c - rx, c - ry, c + rx, c + ry), fill=255)
    else:  # lumpy polygon
        n = int(rng.integers(6, 12))
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        radii = rng.uniform(10, 26, n)
        points = np.stack([np.cos(angles) * radii, np.sin(angles) * radii], 1) + c
        draw.polygon([tuple(p) for p in _smooth(np.vstack([points, points[:1]]), 2)],
                     fill=255)


def draw_dots(draw: ImageDraw.ImageDraw, rng: np.random.Generator, style: Style) -> None:
    for x, y in _points(rng, int(rng.integers(2, 8)), margin=6):
        r = rng.uniform(2.5, 6)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=255)


def draw_bars(draw: ImageDraw.ImageDraw, rng: np.random.Generator, style: Style) -> None:
    width = _pen(rng, style)
    if rng.random() < 0.4:  # one thick bar, near horizontal
        a = math.radians(rng.uniform(-30, 30))
        d = 24 * np.array([math.cos(a), math.sin(a)])
        _line(draw, np.stack([CANVAS / 2 - d, CANVAS / 2 + d]), width + int(rng.integers(0, 8)))
        return
    count = int(rng.integers(2, 6))
    a = math.radians(rng.uniform(0, 180))
    d, normal = np.array([math.cos(a), math.sin(a)]), np.array([-math.sin(a), math.cos(a)])
    offsets = np.linspace(-18, 18, count)
    for o in offsets:
        base = CANVAS / 2 + o * normal
        _line(draw, np.stack([base - 22 * d, base + 22 * d]), width)
    if rng.random() < 0.4:  # a grid: the same strokes across
        for o in offsets:
            base = CANVAS / 2 + o * d
            _line(draw, np.stack([base - 22 * normal, base + 22 * normal]), width)


def _arc(rng: np.random.Generator) -> np.ndarray:
    """Part of a circle (a quarter to most of a turn) somewhere on the canvas."""
    r = rng.uniform(7, 20)
    centre = _points(rng, 1, margin=8 + r / 2)[0]
    start, span = rng.uniform(0, 2 * math.pi), rng.uniform(0.5, 1.6) * math.pi
    t = np.linspace(start, start + span, 24)
    return centre + r * np.stack([np.cos(t), np.sin(t)], 1)


def draw_strokes(draw: ImageDraw.ImageDraw, rng: np.random.Generator, style: Style) -> None:
    """3-6 unrelated pen strokes (straight, bent at sharp corners, or arcs), each wherever it
    falls (an arc may run off the canvas, as off a page)."""
    width = _pen(rng, style)
    for _ in range(int(rng.integers(3, 7))):
        kind = rng.random()
        if kind < 0.4:  # a straight stroke
            start = _points(rng, 1)[0]
            a = rng.uniform(0, 2 * math.pi)
            end = np.clip(start + rng.uniform(12, 40) * np.array([math.cos(a), math.sin(a)]),
                          6, CANVAS - 6)
            _line(draw, np.stack([start, end]), width)
        elif kind < 0.7:  # a stroke bent once or twice at a sharp corner
            _line(draw, _points(rng, int(rng.integers(3, 5))), width)
        else:
            _line(draw, _arc(rng), width)


def _noise(rng: np.random.Generator) -> np.ndarray:
    h, w = (int(v) for v in rng.integers(16, CANVAS, 2))
    speckle = (rng.random((h, w)) < rng.uniform(0.05, 0.4)).astype(np.float32)
    speckle *= rng.uniform(0.4, 1.0, (h, w)).astype(np.float32)
    if rng.random() < 0.5:
        image = Image.fromarray(to_uint8(speckle)).filter(ImageFilter.GaussianBlur(1.0))
        speckle = np.asarray(image, dtype=np.float32) / 255.0
    return speckle


def _letter(rng: np.random.Generator, style: Style, fonts: tuple[str | None, ...],
            char: str | None = None) -> np.ndarray:
    """One glyph (a random one of LETTERS unless `char` is given), slanted, turned and
    drawn with a thin, normal or bold pen."""
    char = char or LETTERS[int(rng.integers(len(LETTERS)))]
    font = _font(fonts[int(rng.integers(len(fonts)))], 52)
    image = Image.new("L", (CANVAS, CANVAS))
    ImageDraw.Draw(image).text((CANVAS / 2, CANVAS / 2), char, fill=255, font=font, anchor="mm")
    shear = rng.uniform(-style.slant, style.slant)
    image = image.transform(image.size, Image.Transform.AFFINE,
                            (1, shear, -shear * CANVAS / 2, 0, 1, 0),
                            resample=Image.Resampling.BILINEAR)
    image = image.rotate(rng.uniform(-style.rotate, style.rotate),
                         resample=Image.Resampling.BILINEAR)
    pen = rng.random()
    if pen < 0.35:  # a thin pen: printed letters in a photo come out thinner than MNIST's
        image = image.filter(ImageFilter.MinFilter(3))
    elif pen > 0.65:  # a bold pen
        image = image.filter(ImageFilter.MaxFilter(int(rng.choice([3, 5]))))
    return np.asarray(image, dtype=np.float32) / 255.0


_DRAWERS: dict[str, Draw] = {"scribble": draw_scribble, "zigzag": draw_zigzag,
                             "shape": draw_shape, "blob": draw_blob, "dots": draw_dots,
                             "bars": draw_bars, "strokes": draw_strokes}


def draw_one(kind: str, rng: np.random.Generator, style: Style) -> np.ndarray:
    """One non-digit of `kind`, float32 (CANVAS, CANVAS) in [0, 1], not yet framed."""
    if kind == "letter":
        fonts: tuple[str | None, ...] = find_fonts(style.fonts) or (None,)
        return _letter(rng, style, fonts)
    if kind == "noise":
        return _noise(rng)
    image = Image.new("L", (CANVAS, CANVAS))
    _DRAWERS[kind](ImageDraw.Draw(image), rng, style)
    return np.asarray(image, dtype=np.float32) / 255.0


def generate(n: int, seed: int = 0, variant: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """n non-digits: uint8 (n, 28, 28) images and int64 (n,) kind indices into KINDS (for
    `variant="printed"`: n printed digits and their labels)."""
    if variant not in STYLES:
        raise ValueError(f"variant must be one of {', '.join(STYLES)}, got {variant!r}")
    style = STYLES[variant]
    rng = np.random.default_rng([seed, VERSION, list(STYLES).index(variant)])
    if variant == "printed":
        return _printed_digits(n, rng, style)
    kinds = rng.choice(len(KINDS), size=n, p=np.asarray(WEIGHTS) / sum(WEIGHTS))
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    for i, k in enumerate(kinds):
        ink = draw_one(KINDS[k], rng, style)
        while not ink.any():  # e.g. a crescent bitten away entirely: draw again
            ink = draw_one(KINDS[k], rng, style)
        images[i] = frame(ink)
    return images, kinds.astype(np.int64)


def _printed_digits(n: int, rng: np.random.Generator,
                    style: Style) -> tuple[np.ndarray, np.ndarray]:
    """n printed digits: uint8 (n, 28, 28) images and their int64 (n,) labels 0-9."""
    fonts: tuple[str | None, ...] = find_fonts(style.fonts) or (None,)
    labels = rng.integers(0, 10, n)
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    for i, digit in enumerate(labels):
        images[i] = frame(_letter(rng, style, fonts, str(int(digit))))
    return images, labels.astype(np.int64)


def info(n: int, seed: int, variant: str = "train") -> dict[str, Any]:
    """What a bank is made of, for config.json, summary.json and the checkpoint."""
    what = ({"digits": "0123456789"} if variant == "printed" else
            {"kinds": dict(zip(KINDS, WEIGHTS, strict=True)), "letters": LETTERS})
    return {"generator": f"mnistlab.notadigit.negatives v{VERSION}", "variant": variant,
            "seed": seed, "size": n, **what, "fonts": fonts_used(variant)}


def cache_path(n: int, seed: int, variant: str) -> Path:
    from mnistlab.data.locate import cache_root

    fonts = ",".join(fonts_used(variant))
    digest = hashlib.sha1(fonts.encode()).hexdigest()[:8]  # other fonts, other images
    return cache_root() / "negatives" / f"v{VERSION}-{variant}-n{n}-s{seed}-{digest}.npz"


_BANKS: dict[Path, tuple[np.ndarray, np.ndarray]] = {}  # drawn or read in this process


def load_bank(n: int, seed: int = 0, variant: str = "train",
              cache: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """`generate(n, seed, variant)`, read from the user cache when it was drawn before (and
    kept in memory for the process: tests and benchmarks train many runs)."""
    path = cache_path(n, seed, variant)
    key = path.relative_to(path.parent.parent)  # the same bank whatever the cache folder
    if cache and key in _BANKS:
        return _BANKS[key]
    images, kinds = _load_or_draw(path, n, seed, variant, cache)
    images.setflags(write=False)  # shared: nobody may change it in place
    kinds.setflags(write=False)
    if cache:
        _BANKS[key] = images, kinds
    return images, kinds


def _load_or_draw(path: Path, n: int, seed: int, variant: str,
                  cache: bool) -> tuple[np.ndarray, np.ndarray]:
    if cache and path.is_file():
        try:
            with np.load(path) as saved:
                images, kinds = saved["images"], saved["kinds"]
            if images.shape == (n, 28, 28) and images.dtype == np.uint8 and len(kinds) == n:
                return images, kinds
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache file: draw again and overwrite it
    images, kinds = generate(n, seed, variant)
    if cache:
        try:
            from mnistlab.atomic import write_bytes

            buffer = io.BytesIO()
            np.savez(buffer, images=images, kinds=kinds)
            write_bytes(path, buffer.getvalue())
        except OSError:
            pass  # a read-only cache only costs the drawing time next run
    return images, kinds
