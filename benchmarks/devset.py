"""The DEVELOPMENT photo-like pictures: digits, whole numbers and non-digits on generated paper.

Development data in the sense of docs/evaluation.md: knobs (thresholds, recipes, detectors)
may be compared on these pictures. The final real-world figures come from the held-out set
(benchmarks/heldout/), which nothing was tuned on; benchmarks/realworld.py prints both side
by side. Nothing here is for training, and nothing in src/ imports this module (it lived in
src/mnistlab/data/photolike.py until the held-out set came; tests/test_heldout_imports.py
checks that src/ does not import it). The handwritten digits are the MNIST images the caller
passes (benchmarks/realworld.py passes *validation* images of the run's own split), the
printed digits and letters come from the Liberation fonts (the not-a-digit training
negatives use DejaVu fonts), and every picture is made from a seed, the same every time.

A picture is ink (a float mask, 1 = ink) put on paper under one named condition:

    clean        white-ish paper, even light, mild noise and JPEG
    gradient     the light falls off across the sheet (to under half on the dark side)
    shadow       a soft-edged shadow across part of the sheet
    blur         out of focus
    noise-jpeg   strong sensor noise and heavy JPEG compression
    rotation     the digit turned by up to 15 degrees
    perspective  the sheet photographed at an angle
    ruled        ruled paper (lines under the ink)
    squared      squared paper
    colour       coloured ink on coloured paper
    small        a small digit (50-90 px tall) in a large photo (1600x1200)
    desk         the sheet lies on a table: smaller than the frame (55-90% of it), turned and
                 slightly skewed, on a darker textured surface of a random colour
    margin       notebook paper: a red or pink vertical margin line beside the ink, faint rules

"desk" and "margin" were added after the held-out set showed these two kinds of photo to fail
(docs/evaluation.md); they come last, so that the single digits of every other condition are
the same pictures as before, for the same seed. Whole numbers and non-digits take the
conditions in turn, so from the 10th number and the 12th non-digit of a kind on, they are the
same ink as before under a condition that may differ.

Letters for non-digits avoid those that look like digits: O o Q D (0), I l i j J L T t (1,
7), Z z (2), E (3), A h y (4), S s (5), G b (6), B (8), g q a (9), and also c C e v V u U
(partial 0, 6, 7, 4).
Used: F H K M N P R W X Y f k m n p r w x, from the Liberation fonts.

If the Liberation fonts are missing, PIL's built-in font is used (`ImageFont.load_default`,
scalable in Pillow >= 10.1), and `fonts_used()` says so.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

CONDITIONS = ("clean", "gradient", "shadow", "blur", "noise-jpeg", "rotation", "perspective",
              "ruled", "squared", "colour", "small", "desk", "margin")
LETTERS = "FHKMNPRWXYfkmnprwx"
SHAPES = ("star", "triangle", "heart", "arrow", "square", "cross", "spiral")
NON_DIGIT_KINDS = ("letter", "shape", "scribble", "tap")
FONT_DIRS = ("/usr/share/fonts/truetype/liberation", "/usr/share/fonts/truetype/liberation2",
             "/usr/share/fonts/liberation", "/usr/share/fonts/TTF", "/Library/Fonts",
             "C:/Windows/Fonts")
FONT_NAMES = ("LiberationSans-Regular.ttf", "LiberationSans-Bold.ttf",
              "LiberationSerif-Regular.ttf", "LiberationSerif-Bold.ttf",
              "LiberationSansNarrow-Regular.ttf",
              "LiberationSans-Italic.ttf")


@dataclass(frozen=True)
class Sample:
    image: Image.Image  # RGB
    text: str  # the digits shown ("7", "2026"); "" for a non-digit
    kind: str  # printed, handwritten, letter, shape, scribble, tap
    condition: str


def find_fonts() -> list[Path]:
    """The Liberation font files present on this machine (may be empty)."""
    found = []
    for name in FONT_NAMES:
        for folder in FONT_DIRS:
            if (Path(folder) / name).is_file():
                found.append(Path(folder) / name)
                break
    return found


def fonts_used() -> str:
    fonts = find_fonts()
    if fonts:
        return f"{len(fonts)} Liberation fonts ({', '.join(f.stem for f in fonts)})"
    return "PIL's built-in font (no Liberation fonts found: results differ from the README's)"


def font(rng: np.random.Generator, size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    fonts = find_fonts()
    if not fonts:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(str(fonts[int(rng.integers(len(fonts)))]), size)


def crop_ink(ink: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(ink > 0.02)
    if rows.size == 0:
        return ink
    return ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def resize(ink: np.ndarray, height: int) -> np.ndarray:
    """Scale an ink mask to `height` px tall, keeping its aspect ratio."""
    h, w = ink.shape
    width = max(1, round(w * height / h))
    out = Image.fromarray(ink.astype(np.float32), mode="F").resize(
        (width, max(1, height)), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)


def text_ink(chars: str, fnt) -> np.ndarray:
    """Characters rendered in `fnt` as an ink mask, cropped to the ink."""
    left, top, right, bottom = fnt.getbbox(chars)
    canvas = Image.new("L", (right - left + 20, bottom - top + 20), 0)
    ImageDraw.Draw(canvas).text((10 - left, 10 - top), chars, font=fnt, fill=255)
    return crop_ink(np.asarray(canvas, dtype=np.float32) / 255.0)


def printed_digit(digit: str, rng: np.random.Generator) -> np.ndarray:
    return text_ink(digit, font(rng, 120))


def handwritten_digit(image: np.ndarray) -> np.ndarray:
    """An MNIST test image (uint8 28x28, white on black) as an ink mask, 5x enlarged."""
    ink = np.asarray(image, dtype=np.float32) / 255.0
    return crop_ink(resize(ink, 140))


def number_ink(glyphs: Sequence[np.ndarray], rng: np.random.Generator,
               printed: bool) -> np.ndarray:
    """Digits side by side on one line: common height, small gaps, a little vertical jitter."""
    height = 120
    parts = [resize(g, int(height * (rng.uniform(0.92, 1.0) if not printed else 1.0)))
             for g in glyphs]
    gaps = [int(rng.uniform(0.08, 0.3) * height) for _ in parts[:-1]]
    width = sum(p.shape[1] for p in parts) + sum(gaps)
    out = np.zeros((height + 16, width), np.float32)
    x = 0
    for i, part in enumerate(parts):
        y = int(rng.integers(0, 9)) if not printed else 8
        h, w = part.shape
        out[y : y + h, x : x + w] = np.maximum(out[y : y + h, x : x + w], part)
        x += w + (gaps[i] if i < len(gaps) else 0)
    return crop_ink(out)


def letter_ink(rng: np.random.Generator) -> np.ndarray:
    return text_ink(LETTERS[int(rng.integers(len(LETTERS)))], font(rng, 120))


def shape_ink(rng: np.random.Generator) -> np.ndarray:
    size = 200
    canvas = Image.new("L", (size, size), 0)
    pen = ImageDraw.Draw(canvas)
    kind = SHAPES[int(rng.integers(len(SHAPES)))]
    width = int(rng.integers(8, 18))
    filled = bool(rng.random() < 0.5)
    c = size / 2
    if kind == "star":
        angles = np.arange(10) * np.pi / 5 - np.pi / 2
        radii = np.where(np.arange(10) % 2 == 0, 90, 38)
        points = [(c + r * np.cos(a), c + r * np.sin(a)) for r, a in zip(radii, angles,
                                                                          strict=True)]
    elif kind == "triangle":
        points = [(c, 15), (185, 180), (15, 180)]
    elif kind == "heart":
        t = np.linspace(0, 2 * np.pi, 60)
        x = 16 * np.sin(t) ** 3
        y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
        points = [(c + 5.2 * a, c - 5.2 * b - 10) for a, b in zip(x, y, strict=True)]
    elif kind == "arrow":
        points = [(15, 80), (120, 80), (120, 40), (185, 100), (120, 160), (120, 120), (15, 120)]
    elif kind == "square":
        points = [(25, 25), (175, 25), (175, 175), (25, 175)]
    elif kind == "cross":
        points = [(20, 20), (180, 180), (100, 100), (180, 20), (20, 180)]
        filled = False
    else:  # spiral
        t = np.linspace(0, 5 * np.pi, 120)
        points = [(c + 9 * a * np.cos(a), c + 9 * a * np.sin(a)) for a in t / 1.5]
        filled = False
    if filled and kind not in ("cross", "spiral"):
        pen.polygon(points, fill=255)
    else:
        closed = kind not in ("cross", "spiral")
        pen.line([*points, points[0]] if closed else points, fill=255, width=width,
                 joint="curve")
    angle = float(rng.uniform(-20, 20))
    canvas = canvas.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    return crop_ink(np.asarray(canvas, dtype=np.float32) / 255.0)


def scribble_ink(rng: np.random.Generator) -> np.ndarray:
    """A random pen stroke: a smooth curve through 5-10 random points, sometimes two."""
    size = 200
    canvas = Image.new("L", (size, size), 0)
    pen = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(1, 3))):
        n = int(rng.integers(5, 11))
        anchors = rng.uniform(10, size - 10, (n, 2))
        t = np.linspace(0, n - 1, 20 * n)
        xs = np.interp(t, np.arange(n), anchors[:, 0])
        ys = np.interp(t, np.arange(n), anchors[:, 1])
        kernel = np.ones(15) / 15  # smooth the polyline into a pen-like curve
        xs = np.convolve(np.pad(xs, 7, mode="edge"), kernel, mode="valid")
        ys = np.convolve(np.pad(ys, 7, mode="edge"), kernel, mode="valid")
        pen.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=255,
                 width=int(rng.integers(6, 14)), joint="curve")
    return crop_ink(np.asarray(canvas, dtype=np.float32) / 255.0)


def tap_image(rng: np.random.Generator) -> Image.Image:
    """A single tap on a drawing canvas: a round dot on white (as the drawing page sends)."""
    side = int(rng.integers(200, 400))
    canvas = Image.new("L", (side, side), 255)
    r = float(rng.uniform(0.02, 0.05)) * side
    cx, cy = rng.uniform(0.2, 0.8, 2) * side
    ImageDraw.Draw(canvas).ellipse([cx - r, cy - r, cx + r, cy + r], fill=0)
    return canvas.convert("RGB")


# ---- putting ink on paper --------------------------------------------------------------------

PAPER_TINTS = [(250, 240, 190), (250, 215, 215), (205, 225, 250), (215, 245, 215),
               (245, 230, 250)]
INK_COLOURS = [(30, 40, 150), (160, 20, 25), (20, 100, 40), (90, 30, 120), (60, 60, 60)]
DESK_COLOURS = [(120, 80, 45), (150, 105, 60), (90, 60, 40), (170, 130, 85), (70, 70, 75),
                (60, 90, 70), (50, 70, 110), (110, 40, 35), (130, 130, 125)]
MARGIN_COLOURS = [(215, 60, 70), (230, 110, 140), (200, 40, 50), (235, 140, 160)]


def perspective_coeffs(src: np.ndarray, dst: np.ndarray) -> list[float]:
    """The 8 coefficients PIL's PERSPECTIVE transform wants, mapping dst corners to src."""
    rows = []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    return np.linalg.solve(np.array(rows, float), src.reshape(8)).tolist()


def desk_surface(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A table top (float RGB, h x w): a random darker colour with wood-like grain along a
    random direction and a little blotchy texture."""
    colour = np.array(DESK_COLOURS[int(rng.integers(len(DESK_COLOURS)))], np.float32)
    colour = colour * rng.uniform(0.8, 1.15)
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    phi = rng.uniform(0, np.pi)
    along = np.cos(phi) * xx + np.sin(phi) * yy
    across = -np.sin(phi) * xx + np.cos(phi) * yy
    grain = np.zeros((h, w), np.float32)
    for _ in range(3):
        period = rng.uniform(4, 30)
        wobble = rng.uniform(0, 8) * np.sin(along / rng.uniform(40, 200) + rng.uniform(0, 6))
        grain += rng.uniform(3, 10) * np.sin((across + wobble) * 2 * np.pi / period
                                             + rng.uniform(0, 6))
    blotch = Image.fromarray(rng.normal(0, 1, (h // 8 + 2, w // 8 + 2)).astype(np.float32),
                             mode="F").resize((w, h), Image.Resampling.BICUBIC)
    grain += rng.uniform(4, 12) * np.asarray(blotch, np.float32)
    return np.clip(colour[None, None, :] * (1 + grain[..., None] / 255.0 * 2), 0, 255)


def on_desk(sheet: np.ndarray, glyph_box: tuple[int, int, int, int],
            rng: np.random.Generator) -> np.ndarray:
    """The sheet (float RGB) photographed lying on a table, in a frame of the same size: it
    covers 55-90% of the frame, turned by up to 8 degrees and skewed a little, shifted so
    that an edge may leave the frame; the ink (glyph_box: x, y, w, h) always stays in view."""
    h, w = sheet.shape[:2]
    s = float(np.sqrt(rng.uniform(0.55, 0.9)))
    angle = np.deg2rad(rng.uniform(-8, 8))
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], float)
    centred = (corners - [w / 2, h / 2]) * s @ rot.T
    centred += rng.uniform(-0.04, 0.04, (4, 2)) * [w, h]  # a little perspective
    shift = rng.uniform(-1, 1, 2) * (1 - s) * [w, h] * 0.8
    x, y, gw, gh = glyph_box
    box = np.array([[x, y], [x + gw, y], [x + gw, y + gh], [x, y + gh]], float)
    for _ in range(6):  # keep the ink in view: halve the shift until it is
        quad = centred + np.array([w / 2, h / 2]) + shift
        to_frame = perspective_coeffs(quad, corners)  # maps sheet points into the frame
        a, b, c, d, e, f, g, k = to_frame
        den = g * box[:, 0] + k * box[:, 1] + 1
        seen = np.stack([(a * box[:, 0] + b * box[:, 1] + c) / den,
                         (d * box[:, 0] + e * box[:, 1] + f) / den], 1)
        if (seen >= 0.03 * np.array([w, h])).all() and (seen <= 0.97 * np.array([w, h])).all():
            break
        shift = shift / 2
    coeffs = perspective_coeffs(corners, quad)  # frame points -> sheet points (PIL's way)
    picture = Image.fromarray(np.clip(sheet, 0, 255).astype(np.uint8), mode="RGB")
    moved = np.asarray(picture.transform((w, h), Image.Transform.PERSPECTIVE, coeffs,
                                         resample=Image.Resampling.BICUBIC), np.float32)
    cover = Image.new("L", (w, h), 255).transform((w, h), Image.Transform.PERSPECTIVE, coeffs,
                                                  resample=Image.Resampling.BILINEAR)
    alpha = np.asarray(cover, np.float32)[..., None] / 255.0
    return moved * alpha + desk_surface(h, w, rng) * (1 - alpha)


def render(ink: np.ndarray, condition: str, rng: np.random.Generator) -> Image.Image:
    """Put an ink mask on generated paper under `condition` (one of CONDITIONS): RGB image."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r} (known: {', '.join(CONDITIONS)})")
    if condition == "small":
        page_w, page_h = 1600, 1200
        height = int(rng.integers(50, 91))
    else:
        page_h = int(rng.integers(220, 360))
        page_w = int(page_h * rng.uniform(0.9, 1.4))
        height = int(page_h * rng.uniform(0.35, 0.6))
    glyph = resize(ink, height)
    if glyph.shape[1] > 0.85 * page_w:  # a long number: widen the sheet
        page_w = int(glyph.shape[1] / 0.75)
    angle = float(rng.uniform(-15, 15) if condition == "rotation" else rng.uniform(-3, 3))
    glyph = np.asarray(Image.fromarray(glyph, mode="F").rotate(
        angle, resample=Image.Resampling.BICUBIC, expand=True), dtype=np.float32)
    glyph = np.clip(glyph, 0, 1)

    paper = np.array([rng.uniform(215, 250)] * 3, np.float32) + rng.uniform(-6, 6, 3)
    ink_rgb = np.array([rng.uniform(15, 70)] * 3, np.float32)
    if condition == "colour":
        paper = np.array(PAPER_TINTS[int(rng.integers(len(PAPER_TINTS)))], np.float32)
        ink_rgb = np.array(INK_COLOURS[int(rng.integers(len(INK_COLOURS)))], np.float32)
    page = np.ones((page_h, page_w, 3), np.float32) * paper
    if condition in ("ruled", "squared"):
        spacing = int(rng.integers(22, 40)) if condition == "ruled" else int(rng.integers(18, 30))
        line = np.array([150, 170, 220] if rng.random() < 0.6 else [150, 150, 150], np.float32)
        width = int(rng.integers(1, 3))
        offset = int(rng.integers(0, spacing))
        for y in range(offset, page_h, spacing):
            page[y : y + width] = line
        if condition == "squared":
            for x in range(offset, page_w, spacing):
                page[:, x : x + width] = line
    gh, gw = glyph.shape
    gh, gw = min(gh, page_h), min(gw, page_w)
    glyph = glyph[:gh, :gw]
    y = int(rng.integers(0, max(1, page_h - gh)))
    x = int(rng.integers(0, max(1, page_w - gw)))
    if condition != "small":  # keep the digit away from the edges, roughly central
        y = int(np.clip(y, 0.1 * page_h, max(0.1 * page_h, 0.9 * page_h - gh)))
        x = int(np.clip(x, 0.08 * page_w, max(0.08 * page_w, 0.92 * page_w - gw)))
    if condition == "margin":  # faint rules and a margin line beside the ink, a little askew
        slope = float(np.tan(np.deg2rad(rng.uniform(-4, 4))))
        rows = np.arange(page_h, dtype=np.float32)[:, None]
        cols = np.arange(page_w, dtype=np.float32)[None, :]
        rule = paper - rng.uniform(20, 45) * np.array([1.0, 0.7, 0.2], np.float32)
        spacing = int(rng.integers(22, 40))
        across = (rows - slope * (cols - page_w / 2) - rng.uniform(0, spacing)) % spacing
        page[across < 1.5] = rule
        colour = np.array(MARGIN_COLOURS[int(rng.integers(len(MARGIN_COLOURS)))], np.float32)
        width = int(rng.integers(1, 4))
        gap = int(rng.uniform(0.02, 0.12) * page_w)
        left = x - gap - width
        if (rng.random() < 0.5 and x + gw + gap + width < page_w - 2) or left < 2:
            column = min(x + gw + gap, page_w - width - 2)
        else:
            column = left
        along = cols + slope * (rows - (y + gh / 2))  # the line's own column, row by row
        lines = [column, column + width + int(rng.integers(3, 7))][: 1 + (rng.random() < 0.3)]
        for start in lines:  # one margin line, sometimes two
            page[(along >= start) & (along < start + width)] = colour
    alpha = np.zeros((page_h, page_w, 1), np.float32)
    alpha[y : y + gh, x : x + gw, 0] = glyph[: page_h - y, : page_w - x]
    page = page * (1 - alpha) + ink_rgb * alpha
    if condition == "desk":
        page = on_desk(page, (x, y, gw, gh), rng)

    # Light: a mild drift everywhere; strong in "gradient"; a soft shadow in "shadow".
    yy = np.arange(page_h, dtype=np.float32)[:, None]  # broadcast, not full grids
    xx = np.arange(page_w, dtype=np.float32)[None, :]
    theta = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(theta) * xx / page_w + np.sin(theta) * yy / page_h)
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    low = rng.uniform(0.4, 0.55) if condition == "gradient" else rng.uniform(0.85, 0.97)
    light = low + (1 - low) * ramp
    if condition == "shadow":
        phi = rng.uniform(0, 2 * np.pi)
        edge = (np.cos(phi) * (xx - x - gw / 2) + np.sin(phi) * (yy - y - gh / 2))
        soft = max(4.0, rng.uniform(0.03, 0.12) * max(page_w, page_h))
        shade = 1 / (1 + np.exp(-(edge - rng.uniform(-0.3, 0.3) * gw) / soft))
        light = light * (1 - rng.uniform(0.35, 0.55) * shade)
    page = page * light[..., None]

    image = Image.fromarray(np.clip(page, 0, 255).astype(np.uint8), mode="RGB")
    if condition == "perspective":
        d = rng.uniform(0.05, 0.15, (4, 2)) * np.array([page_w, page_h])
        corners = np.array([[0, 0], [page_w, 0], [page_w, page_h], [0, page_h]], float)
        # Output corners sample from outside the page: the sheet appears as a smaller,
        # skewed quadrilateral on a background of about its colour, all of it in view.
        moved = corners - d * np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]])
        fill = tuple(int(v) for v in np.asarray(image).reshape(-1, 3).mean(0))
        image = image.transform(image.size, Image.Transform.PERSPECTIVE,
                                perspective_coeffs(moved, corners),
                                resample=Image.Resampling.BICUBIC, fillcolor=fill)
    if condition == "blur":
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(1.5, 3.0) * height / 120))
    sigma = rng.uniform(6, 12) if condition == "noise-jpeg" else rng.uniform(1, 3)
    noisy = np.asarray(image, np.float32) + rng.normal(0, sigma, (page_h, page_w, 1))
    image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), mode="RGB")
    quality = int(rng.integers(15, 35) if condition == "noise-jpeg" else rng.integers(80, 95))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


# ---- whole sets ------------------------------------------------------------------------------

def sample_rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


KINDS = {"printed": 1, "handwritten": 2, "letter": 3, "shape": 4, "scribble": 5, "tap": 6,
         "number-printed": 7, "number-handwritten": 8}


def digit_samples(kind: str, per_condition: int, seed: int = 0,
                  mnist_images: np.ndarray | None = None,
                  mnist_labels: np.ndarray | None = None,
                  conditions: Sequence[str] = CONDITIONS) -> list[Sample]:
    """`per_condition` single digits (labels cycling 0-9) for each condition. `kind` is
    "printed" (fonts) or "handwritten" (needs MNIST *test* images and labels)."""
    if kind == "handwritten" and (mnist_images is None or mnist_labels is None):
        raise ValueError("handwritten digits need MNIST test images and labels")
    out = []
    for ci, condition in enumerate(conditions):
        for i in range(per_condition):
            rng = sample_rng(seed, KINDS[kind], ci, i)
            if kind == "printed":
                digit = str(i % 10)
                ink = printed_digit(digit, rng)
            else:
                index = int(rng.integers(len(mnist_labels)))
                digit = str(int(mnist_labels[index]))
                ink = handwritten_digit(mnist_images[index])
            out.append(Sample(render(ink, condition, rng), digit, kind, condition))
    return out


def number_samples(kind: str, count: int, seed: int = 0,
                   mnist_images: np.ndarray | None = None,
                   mnist_labels: np.ndarray | None = None) -> list[Sample]:
    """`count` whole numbers of 2-6 digits, each under a condition taken in turn (not "small",
    where a whole number would be too small to read, nor "rotation")."""
    printed = kind == "printed"
    if not printed and (mnist_images is None or mnist_labels is None):
        raise ValueError("handwritten numbers need MNIST test images and labels")
    conditions = [c for c in CONDITIONS if c not in ("small", "rotation")]
    by_label = ({d: np.nonzero(np.asarray(mnist_labels) == d)[0] for d in range(10)}
                if not printed else {})
    out = []
    for i in range(count):
        rng = sample_rng(seed, KINDS[f"number-{kind}"], i)
        length = int(rng.integers(2, 7))
        text = "".join(str(int(d)) for d in rng.integers(0, 10, length))
        if printed:
            fnt = font(rng, 120)
            glyphs = [text_ink(d, fnt) for d in text]
        else:
            glyphs = [handwritten_digit(mnist_images[int(rng.choice(by_label[int(d)]))])
                      for d in text]
        condition = conditions[i % len(conditions)]
        ink = number_ink(glyphs, rng, printed)
        out.append(Sample(render(ink, condition, rng), text, f"number-{kind}", condition))
    return out


def non_digit_samples(per_kind: int, seed: int = 0) -> list[Sample]:
    """Letters (not digit-like), shapes, scribbles and taps, `per_kind` of each, under the
    conditions in turn (taps are drawing-page canvases)."""
    makers = {"letter": letter_ink, "shape": shape_ink, "scribble": scribble_ink}
    out = []
    for kind in NON_DIGIT_KINDS:
        for i in range(per_kind):
            rng = sample_rng(seed, KINDS[kind], i)
            if kind == "tap":
                out.append(Sample(tap_image(rng), "", kind, "canvas"))
                continue
            condition = CONDITIONS[i % len(CONDITIONS)]
            out.append(Sample(render(makers[kind](rng), condition, rng), "", kind, condition))
    return out
