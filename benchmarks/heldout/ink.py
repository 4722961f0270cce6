"""Ink for the held-out pictures: float masks (1 = ink), drawn by code that training never runs.

Two pens, neither of them training's (mnistlab's negatives draw smooth curves through random
points, zigzags and PIL polylines on a 64 px canvas):

- `ruler`: geometric outlines at 2x resolution (PIL lines), for shapes drawn neatly;
- `hand`: a pen with mass. A point is pulled towards each waypoint of a skeleton by a spring,
  slowed by damping and pushed by random force, so it overshoots, wobbles and rounds corners
  as a hand does; its width follows a slowly varying pressure that tapers at both ends and
  thins when the pen moves fast. The trace is stamped as discs.

A skeleton is a list of strokes, each an (n, 2) array in unit coordinates (-1..1, y down).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

from . import fonts

CANVAS = 160  # drawing size; the camera scales the ink to the page afterwards
SUPER = 2  # drawn at 2x and reduced: anti-aliased edges

Skeleton = list[np.ndarray]


# ---- masks ------------------------------------------------------------------------------------

def crop(ink: np.ndarray, level: float = 0.03) -> np.ndarray:
    rows, cols = np.nonzero(ink > level)
    if rows.size == 0:
        return ink
    return ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def _reduce(canvas: Image.Image) -> np.ndarray:
    small = canvas.resize((canvas.width // SUPER, canvas.height // SUPER), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def _to_pixels(points: np.ndarray, size: int) -> np.ndarray:
    margin = 0.12 * size
    return (points + 1) / 2 * (size - 2 * margin) + margin


# ---- the two pens ----------------------------------------------------------------------------

def ruler(skeleton: Skeleton, width: float, closed: tuple[bool, ...] | None = None) -> np.ndarray:
    """Neat lines of one width along each stroke (closed strokes are joined to their start)."""
    size = CANVAS * SUPER
    canvas = Image.new("L", (size, size), 0)
    pen = ImageDraw.Draw(canvas)
    w = max(1, round(width * SUPER))
    for i, stroke in enumerate(skeleton):
        pts = _to_pixels(stroke, size)
        if closed and closed[i]:
            pts = np.vstack([pts, pts[:2]])
        pen.line([tuple(p) for p in pts], fill=255, width=w, joint="curve")
        for x, y in (pts[0], pts[-1]):
            pen.ellipse((x - w / 2, y - w / 2, x + w / 2, y + w / 2), fill=255)
    return _reduce(canvas)


def _resample(stroke: np.ndarray, spacing: float) -> np.ndarray:
    seg = np.linalg.norm(np.diff(stroke, axis=0), axis=1)
    dist = np.concatenate([[0.0], np.cumsum(seg)])
    if dist[-1] == 0:
        return stroke[:1]
    t = np.linspace(0, dist[-1], max(2, int(dist[-1] / spacing) + 1))
    return np.stack([np.interp(t, dist, stroke[:, 0]), np.interp(t, dist, stroke[:, 1])], 1)


def pen_trace(stroke: np.ndarray, rng: np.random.Generator, wobble: float) -> np.ndarray:
    """Where a pen with mass goes when it follows `stroke` (unit coordinates)."""
    targets = _resample(stroke, 0.07)
    k, c, dt = rng.uniform(120, 220), rng.uniform(14, 22), 0.01
    p = targets[0] + rng.normal(0, 0.01, 2)
    v = np.zeros(2)
    trace = [p.copy()]
    for target in targets[1:]:
        for _ in range(60):
            force = k * (target - p) - c * v + rng.normal(0, wobble, 2)
            v = v + force * dt
            p = p + v * dt
            trace.append(p.copy())
            if np.linalg.norm(target - p) < 0.05:
                break
    return np.array(trace)


def hand(skeleton: Skeleton, rng: np.random.Generator, width: float,
         wobble: float | None = None) -> np.ndarray:
    """The skeleton traced by the pen with mass, stamped with pressure-varying discs."""
    size = CANVAS * SUPER
    canvas = Image.new("L", (size, size), 0)
    pen = ImageDraw.Draw(canvas)
    wobble = rng.uniform(5, 18) if wobble is None else wobble
    for stroke in skeleton:
        trace = _to_pixels(pen_trace(stroke, rng, wobble), size)
        trace = _resample(trace, 0.6)  # dense enough that the discs overlap
        n = len(trace)
        s = np.linspace(0, 1, n)
        knots = rng.uniform(0.65, 1.25, 6)  # slowly varying pressure
        pressure = np.interp(s, np.linspace(0, 1, 6), knots)
        taper = np.clip(np.minimum(s, 1 - s) * n / 12, 0.45, 1.0)  # lighter at the ends
        speed = np.linalg.norm(np.gradient(trace, axis=0), axis=1)
        thin = 1 / (1 + 0.4 * speed / max(float(np.median(speed)), 1e-6))
        radius = width * SUPER / 2 * pressure * taper * (0.6 + 0.8 * thin)
        for (x, y), r in zip(trace, radius, strict=True):
            pen.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return _reduce(canvas)


def draw(skeleton: Skeleton, rng: np.random.Generator, closed: tuple[bool, ...] | None = None
         ) -> tuple[np.ndarray, str]:
    """The skeleton by ruler or by hand (half each), and which pen drew it."""
    width = rng.uniform(4, 11)
    if rng.random() < 0.5:
        return crop(ruler(skeleton, width, closed)), "ruler"
    strokes = [np.vstack([s, s[:1]]) if closed and closed[i] else s
               for i, s in enumerate(skeleton)]
    return crop(hand(strokes, rng, width)), "hand"


# ---- skeletons --------------------------------------------------------------------------------

def rotate(skeleton: Skeleton, degrees: float) -> Skeleton:
    a = math.radians(degrees)
    m = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    return [s @ m for s in skeleton]


def fit(skeleton: Skeleton) -> Skeleton:
    """Scaled and centred so the whole skeleton spans -1..1 on its longer side."""
    pts = np.vstack(skeleton)
    lo, hi = pts.min(0), pts.max(0)
    scale = 2 / max(float((hi - lo).max()), 1e-6)
    centre = (lo + hi) / 2
    return [(s - centre) * scale for s in skeleton]


def arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 48
        ) -> np.ndarray:
    t = np.linspace(a0, a1, n)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def spiral(rng: np.random.Generator) -> tuple[Skeleton, str]:
    turns = rng.uniform(1.6, 4.0)
    sign = 1 if rng.random() < 0.5 else -1
    if rng.random() < 0.25:  # a square spiral
        steps = int(turns * 4)
        pts, p, d = [np.zeros(2)], np.zeros(2), np.array([1.0, 0.0])
        for i in range(steps):
            p = p + d * (i // 2 + 1)
            pts.append(p.copy())
            d = np.array([-sign * d[1], sign * d[0]])
        return rotate(fit([np.array(pts)]), rng.uniform(0, 360)), "square spiral"
    t = np.linspace(0, turns * 2 * math.pi, int(80 * turns))
    r = 0.1 + t
    pts = np.stack([r * np.cos(sign * t), r * np.sin(sign * t)], 1)
    return rotate(fit([pts]), rng.uniform(0, 360)), "spiral"


def outline_rect(rng: np.random.Generator) -> tuple[Skeleton, str]:
    aspect = 1.0 if rng.random() < 0.45 else rng.uniform(0.3, 0.75)
    w, h = (1.0, aspect) if rng.random() < 0.5 else (aspect, 1.0)
    if rng.random() < 0.25:  # rounded corners
        r = 0.25 * min(w, h)
        corners = [(w - r, h - r, 0), (-w + r, h - r, 0.5), (-w + r, -h + r, 1), (w - r, -h + r,
                                                                                   1.5)]
        pts = np.vstack([arc(x, y, r, r, a * math.pi, (a + 0.5) * math.pi, 12)
                         for x, y, a in corners])
        name = "rounded rectangle"
    else:
        pts = np.array([[-w, -h], [w, -h], [w, h], [-w, h]])
        name = "square" if aspect == 1.0 else "rectangle"
    return rotate(fit([pts]), rng.uniform(-25, 25)), name


def face(rng: np.random.Generator) -> tuple[Skeleton, str]:
    strokes: Skeleton = []
    head = rng.random() > 0.15
    if head:
        strokes.append(arc(0, 0, 1, rng.uniform(0.85, 1.1), 0, 2 * math.pi, 64))
    ey, ex = rng.uniform(-0.45, -0.2), rng.uniform(0.3, 0.45)
    eyes = rng.choice(["dot", "line", "x"])
    for sx in (-ex, ex):
        if eyes == "dot":
            strokes.append(arc(sx, ey, 0.06, 0.08, 0, 2 * math.pi, 12))
        elif eyes == "line":
            strokes.append(np.array([[sx, ey - 0.12], [sx, ey + 0.12]]))
        else:
            strokes += [np.array([[sx - 0.1, ey - 0.1], [sx + 0.1, ey + 0.1]]),
                        np.array([[sx - 0.1, ey + 0.1], [sx + 0.1, ey - 0.1]])]
    mood = str(rng.choice(["smile", "frown", "flat", "open"]))
    my = rng.uniform(0.3, 0.5)
    if mood == "smile":
        strokes.append(arc(0, my - 0.25, 0.5, 0.3, 0.15 * math.pi, 0.85 * math.pi, 24))
    elif mood == "frown":
        strokes.append(arc(0, my + 0.2, 0.45, 0.25, 1.15 * math.pi, 1.85 * math.pi, 24))
    elif mood == "flat":
        strokes.append(np.array([[-0.35, my], [0.35, my]]))
    else:
        strokes.append(arc(0, my, 0.18, 0.14, 0, 2 * math.pi, 20))
    return rotate(strokes, rng.uniform(-15, 15)), f"face ({mood}{'' if head else ', no head'})"


def arrow(rng: np.random.Generator) -> tuple[Skeleton, str]:
    if rng.random() < 0.7:
        direction = float(rng.integers(0, 8)) * 45.0  # the eight compass directions
    else:
        direction = float(rng.uniform(0, 360))
    head = 0.45 * rng.uniform(0.7, 1.2)
    spread = math.radians(rng.uniform(25, 45))
    if rng.random() < 0.15:  # curved shaft
        bend = rng.uniform(0.3, 0.6) * (1 if rng.random() < 0.5 else -1)
        t = np.linspace(-1, 1, 30)
        shaft = np.stack([t, bend * (1 - t ** 2)], 1)
    else:
        shaft = np.array([[-1.0, 0.0], [1.0, 0.0]])
    tip, before = shaft[-1], shaft[-2]
    back = math.atan2(*(before - tip)[::-1])
    wings = [tip + head * np.array([math.cos(back + s * spread), math.sin(back + s * spread)])
             for s in (-1, 1)]
    strokes = [shaft, np.array([wings[0], tip, wings[1]])]
    name = "arrow"
    if rng.random() < 0.12:  # double-headed
        tail, after = shaft[0], shaft[1]
        back = math.atan2(*(after - tail)[::-1])
        strokes.append(np.array([tail + head * np.array([math.cos(back + s * spread),
                                                         math.sin(back + s * spread)])
                                 for s in (-1, 0, 1)])[[0, 1, 2]])
        strokes[-1][1] = tail
        name = "double arrow"
    # y grows downwards: direction 90 points down, 270 up
    compass = {0: "right", 45: "down-right", 90: "down", 135: "down-left", 180: "left",
               225: "up-left", 270: "up", 315: "up-right"}
    where = compass.get(int(direction), f"{direction:.0f} deg")
    return rotate(strokes, -direction), f"{name} {where}"


def check(rng: np.random.Generator) -> tuple[Skeleton, str]:
    short = rng.uniform(0.3, 0.55)
    pts = np.array([[-short, -short * rng.uniform(0.6, 1.1)], [0, 0],
                    [rng.uniform(0.8, 1.3), -rng.uniform(1.1, 1.8)]])
    return rotate([pts], rng.uniform(-20, 20)), "check mark"


def _lemniscate() -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, 80)
    return np.stack([np.cos(t) / (1 + np.sin(t) ** 2),
                     np.sin(t) * np.cos(t) / (1 + np.sin(t) ** 2)], 1)


def symbol(rng: np.random.Generator) -> tuple[Skeleton, str]:
    """A hand-drawn everyday symbol, or a free doodle (turtle walk), for the pen with mass."""
    name = str(rng.choice(["house", "sun", "cloud", "lightning", "envelope", "infinity",
                           "hash", "flower", "fish", "doodle"]))
    if name == "house":
        s = [np.array([[-0.7, -0.1], [-0.7, 0.9], [0.7, 0.9], [0.7, -0.1], [-0.7, -0.1],
                       [0, -0.8], [0.7, -0.1]]),
             np.array([[-0.15, 0.9], [-0.15, 0.45], [0.15, 0.45], [0.15, 0.9]])]
    elif name == "sun":
        s = [arc(0, 0, 0.45, 0.45, 0, 2 * math.pi, 40)]
        for a in np.arange(int(rng.integers(6, 11))) * 2 * math.pi / 8:
            d = np.array([math.cos(a), math.sin(a)])
            s.append(np.stack([0.6 * d, 0.95 * d]))
    elif name == "cloud":
        bumps = [arc(x, y, r, r, a0 * math.pi, a1 * math.pi, 16) for x, y, r, a0, a1 in
                 ((-0.6, 0.1, 0.3, 0.5, 1.5), (-0.3, -0.2, 0.35, 1.0, 1.9),
                  (0.2, -0.3, 0.4, 1.1, 2.0), (0.6, 0.05, 0.3, 1.5, 2.5))]
        s = [np.vstack([*bumps, [[-0.6, 0.4]]])]
    elif name == "lightning":
        s = [np.array([[0.2, -1], [-0.4, 0.1], [0.05, 0.1], [-0.25, 1], [0.5, -0.2],
                       [0.05, -0.2], [0.45, -1], [0.2, -1]])]
    elif name == "envelope":
        s = [np.array([[-1, -0.6], [1, -0.6], [1, 0.6], [-1, 0.6], [-1, -0.6]]),
             np.array([[-1, -0.6], [0, 0.1], [1, -0.6]])]
    elif name == "infinity":
        s = [_lemniscate()]
    elif name == "hash":
        s = [np.array([[-0.3, -1], [-0.45, 1]]), np.array([[0.4, -1], [0.25, 1]]),
             np.array([[-0.9, -0.35], [0.9, -0.35]]), np.array([[-0.9, 0.35], [0.9, 0.35]])]
    elif name == "flower":
        petals = int(rng.integers(5, 8))
        t = np.linspace(0, 2 * math.pi, 120)
        r = 0.35 + 0.6 * np.abs(np.sin(petals * t / 2))
        s = [np.stack([r * np.cos(t), r * np.sin(t)], 1), arc(0, 0, 0.2, 0.2, 0, 2 * math.pi, 16)]
    elif name == "fish":
        s = [arc(-0.15, 0, 0.65, 0.4, 0, 2 * math.pi, 40),
             np.array([[0.45, 0], [1, -0.4], [1, 0.4], [0.45, 0]]),
             arc(-0.5, -0.08, 0.05, 0.05, 0, 2 * math.pi, 8)]
    else:  # a turtle walk: steps of random length, turning by a drifting curvature
        heading, p, pts = rng.uniform(0, 2 * math.pi), np.zeros(2), [np.zeros(2)]
        curvature = rng.normal(0, 0.4)
        for _ in range(int(rng.integers(25, 60))):
            curvature = 0.85 * curvature + rng.normal(0, 0.35)
            heading += curvature
            p = p + rng.uniform(0.08, 0.2) * np.array([math.cos(heading), math.sin(heading)])
            pts.append(p.copy())
        s = [np.array(pts)]
    return rotate(fit(s), rng.uniform(-20, 20)), name


# ---- textures ---------------------------------------------------------------------------------

def texture(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A patch of pattern (not a drawn shape): hatching, cross-hatching, fabric weave, wood
    grain, halftone dots or brick, clipped to a rectangle or an ellipse."""
    name = str(rng.choice(["hatching", "cross-hatching", "fabric", "grain", "halftone",
                           "brick"]))
    h = CANVAS
    w = int(h * rng.uniform(0.7, 1.6))
    size = (w * SUPER, h * SUPER)
    canvas = Image.new("L", size, 0)
    pen = ImageDraw.Draw(canvas)
    step = rng.uniform(9, 18) * SUPER
    line = max(2, round(rng.uniform(1.5, 3.5) * SUPER))
    big = 2 * max(size)
    if name in ("hatching", "cross-hatching"):
        angles = [rng.uniform(0, 180)]
        if name == "cross-hatching":
            angles.append(angles[0] + rng.uniform(60, 120))
        for a in angles:
            d = np.array([math.cos(math.radians(a)), math.sin(math.radians(a))])
            n = np.array([-d[1], d[0]])
            for o in np.arange(-big, big, step):
                c = np.array(size) / 2 + o * n
                pen.line([tuple(c - big * d), tuple(c + big * d)], fill=255, width=line)
    elif name == "fabric":  # a plain weave: over-under dashes in both directions
        cell = int(step)
        for y in range(0, size[1], cell):
            for x in range(0, size[0], cell):
                if (x // cell + y // cell) % 2:
                    pen.rectangle((x + 2, y + cell * 0.3, x + cell - 2, y + cell * 0.7), fill=255)
                else:
                    pen.rectangle((x + cell * 0.3, y + 2, x + cell * 0.7, y + cell - 2), fill=255)
    elif name == "grain":  # wood grain: wavy lines bent round a knot
        knot = np.array([rng.uniform(0.2, 0.8) * size[0], rng.uniform(0.2, 0.8) * size[1]])
        xs = np.arange(0, size[0], 2.0)
        phase = rng.uniform(0, 6)
        for y0 in np.arange(-step, size[1] + step, step * 0.8):
            dy = y0 - knot[1]
            bump = 30 * SUPER * np.exp(-((xs - knot[0]) ** 2) / (2 * (25 * SUPER) ** 2)) * \
                np.sign(dy) * np.exp(-abs(dy) / (40 * SUPER))
            ys = y0 + 4 * SUPER * np.sin(xs / (35 * SUPER) + phase + y0 / 50) + bump
            pen.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=255, width=line)
    elif name == "halftone":
        angle = rng.uniform(0, 2 * math.pi)
        for y in np.arange(step / 2, size[1], step):
            for x in np.arange(step / 2, size[0], step):
                shade = 0.5 + 0.5 * math.cos(angle) * x / size[0] + 0.5 * math.sin(angle) * \
                    y / size[1]
                r = step * 0.45 * min(1.0, max(0.15, shade))
                pen.ellipse((x - r, y - r, x + r, y + r), fill=255)
    else:  # brick
        bh = step * 1.3
        bw = bh * rng.uniform(1.8, 2.6)
        for row, y in enumerate(np.arange(0, size[1], bh)):
            pen.line([(0, y), (size[0], y)], fill=255, width=line)
            for x in np.arange(-(row % 2) * bw / 2, size[0], bw):
                pen.line([(x, y), (x, y + bh)], fill=255, width=line)
    ink = _reduce(canvas)
    if rng.random() < 0.5:  # an elliptical patch
        yy, xx = np.mgrid[0:h, 0:w]
        inside = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2 <= 1
        ink = ink * inside
    return ink.astype(np.float32), name


# ---- text -------------------------------------------------------------------------------------

def glyph(text: str, rng: np.random.Generator, size: int = 128,
          font_choice: int | None = None) -> tuple[np.ndarray, str]:
    """`text` in one of the held-out fonts that has all its characters: ink, font name."""
    choices = fonts.fonts_with(text)
    if not choices:
        raise fonts.MissingFontError(f"no held-out font has a glyph for {text!r}")
    path = choices[int(rng.integers(len(choices))) if font_choice is None
                   else font_choice % len(choices)]
    fnt = fonts.truetype(path, size)
    left, top, right, bottom = fnt.getbbox(text)
    canvas = Image.new("L", (right - left + 24, bottom - top + 24), 0)
    ImageDraw.Draw(canvas).text((12 - left, 12 - top), text, font=fnt, fill=255)
    if rng.random() < 0.2:  # a felt pen's heavier line
        canvas = canvas.filter(ImageFilter.MaxFilter(3))
    return crop(np.asarray(canvas, dtype=np.float32) / 255.0), path.stem


# ---- real handwriting --------------------------------------------------------------------------

def upsample_optdigit(image: np.ndarray, height: int = 120) -> np.ndarray:
    """A UCI optdigits image (8x8, counts 0-16 of ink pixels in 4x4 blocks of the 32x32
    scan) as a smooth ink mask: bicubic to 16x, a light blur, then a soft threshold near 40%
    ink that turns block averages back into strokes (thick ones: 8x8 keeps no finer detail)."""
    block = np.asarray(image, dtype=np.float32) / 16.0
    padded = np.pad(block, 1)
    side = padded.shape[0] * 16
    big = Image.fromarray(padded, mode="F").resize((side, side), Image.Resampling.BICUBIC)
    v = ndimage.gaussian_filter(np.asarray(big, dtype=np.float32), 4)
    ink = np.clip((v - 0.38) / 0.2, 0, 1)
    ink = ink * ink * (3 - 2 * ink)  # smoothstep: soft but definite edges
    ink = crop(ink)
    scale = height / ink.shape[0]
    out = Image.fromarray(ink, mode="F").resize(
        (max(1, round(ink.shape[1] * scale)), height), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(out, dtype=np.float32), 0, 1)


def upsample_mnist(image: np.ndarray, height: int = 120) -> np.ndarray:
    """An MNIST image (uint8 28x28, white on black) as an ink mask `height` px tall."""
    ink = crop(np.asarray(image, dtype=np.float32) / 255.0)
    scale = height / ink.shape[0]
    out = Image.fromarray(ink, mode="F").resize(
        (max(1, round(ink.shape[1] * scale)), height), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(out, dtype=np.float32), 0, 1)


def number_line(glyphs: list[np.ndarray], rng: np.random.Generator, printed: bool) -> np.ndarray:
    """Digits on one baseline: a common height (each a little off for handwriting), gaps of
    10-35% of the height, and for handwriting a baseline that drifts."""
    height = 120
    parts = []
    for g in glyphs:
        h = height if printed else int(height * rng.uniform(0.85, 1.05))
        w = max(1, round(g.shape[1] * h / g.shape[0]))
        parts.append(np.clip(np.asarray(Image.fromarray(g, mode="F").resize(
            (w, h), Image.Resampling.BILINEAR), dtype=np.float32), 0, 1))
    gap_scale = (0.1, 0.2) if printed else (0.12, 0.35)
    gaps = [int(rng.uniform(*gap_scale) * height) for _ in parts[:-1]] + [0]
    drift = 0.0 if printed else rng.uniform(-0.08, 0.08)
    width = sum(p.shape[1] for p in parts) + sum(gaps)
    out = np.zeros((int(height * 1.6), width + 2), np.float32)
    x = 0
    for part, gap in zip(parts, gaps, strict=True):
        h, w = part.shape
        y = int(0.3 * height + drift * x) + (height - h) + (0 if printed else int(rng.integers(-4,
                                                                                          5)))
        y = int(np.clip(y, 0, out.shape[0] - h))
        out[y : y + h, x : x + w] = np.maximum(out[y : y + h, x : x + w], part)
        x += w + gap
    return crop(out)
