"""The held-out set's own paper and camera: ink on a sheet, photographed. Written anew.

It shares no code and no model with the development generator (benchmarks/devset.py, which
alpha-blends flat ink on flat paper, lights it with a linear ramp or a sigmoid shadow, blurs
with a Gaussian, warps with PIL's perspective transform and adds Gaussian noise and JPEG):

    paper    a palette of sheets with fibre texture (multi-octave value noise) and crumple
             shading; optional dot grid, or a margin line with faint rules
    ink      subtractive (ink filters the light the paper reflects), with ballpoint, gel,
             felt and graphite colours; pencil ink is grainy
    optics   a homography solved by DLT and sampled by map_coordinates, with barrel or
             pincushion distortion; a disc kernel for defocus, a line kernel for motion
    light    vignetting by the cos^4 law, a specular spot, a hard-edged shadow with a narrow
             penumbra, white-balance tints, low light with digital gain
    sensor   Poisson shot noise plus read noise, then WebP or JPEG at random quality

A picture is taken under one named condition (CONDITIONS), always with a little of the others.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image
from scipy import ndimage, signal

CONDITIONS = ("even", "vignette", "spotlight", "hard-shadow", "defocus", "motion", "tilt",
              "desk", "dotgrid", "margin", "pencil", "dim", "tinted", "far")

PAPERS = ((246, 244, 236), (250, 250, 250), (238, 232, 214), (226, 226, 220),
          (240, 238, 228), (232, 238, 244))
INKS = {"ballpoint": (35, 50, 150), "gel": (25, 25, 30), "felt": (20, 20, 20),
        "red": (170, 30, 40), "green": (30, 110, 60)}
GRAPHITE = (95, 95, 100)
CELLS = 8  # the lens mapping is exact at the corners of 8x8 cells, bilinear inside
DESKS = ((120, 80, 50), (70, 70, 75), (180, 150, 110), (40, 40, 45), (150, 160, 165))


def value_noise(shape: tuple[int, int], rng: np.random.Generator, cell: float,
                octaves: int = 3) -> np.ndarray:
    """Smooth noise in about -1..1: random grids enlarged bicubically, summed over octaves."""
    h, w = shape
    out = np.zeros(shape, np.float32)
    amp, total = 1.0, 0.0
    for _ in range(octaves):
        gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
        grid = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
        big = Image.fromarray(grid, mode="F").resize((w, h), Image.Resampling.BICUBIC)
        out += amp * np.asarray(big, dtype=np.float32)
        total += amp
        amp, cell = amp * 0.5, max(1.5, cell / 2)
    return out / total


def scale_ink(ink: np.ndarray, height: int) -> np.ndarray:
    h, w = ink.shape
    width = max(1, round(w * height / h))
    out = Image.fromarray(ink.astype(np.float32), mode="F").resize(
        (width, max(1, height)), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)


def make_sheet(h: int, w: int, rng: np.random.Generator, condition: str) -> np.ndarray:
    """A sheet of paper, float RGB 0-255."""
    colour = np.array(PAPERS[int(rng.integers(len(PAPERS)))], np.float32)
    fibre = value_noise((h, w), rng, cell=rng.uniform(2, 5), octaves=2)
    crumple = value_noise((h, w), rng, cell=rng.uniform(60, 160), octaves=2)
    shade = 1 + rng.uniform(0.01, 0.03) * fibre + rng.uniform(0.0, 0.05) * crumple
    sheet = colour[None, None, :] * shade[..., None]
    if condition == "dotgrid":
        step = int(rng.integers(14, 26))
        dot = np.array((150, 150, 160) if rng.random() < 0.5 else (150, 170, 210), np.float32)
        r = rng.uniform(0.8, 1.6)
        yy, xx = np.mgrid[0:h, 0:w]
        oy, ox = rng.uniform(0, step, 2)
        d2 = ((yy - oy + step / 2) % step - step / 2) ** 2 + ((xx - ox + step / 2) % step
                                                              - step / 2) ** 2
        a = np.clip(r + 0.5 - np.sqrt(d2), 0, 1)[..., None] * 0.8
        sheet = sheet * (1 - a) + dot * a
    elif condition == "margin":
        step = int(rng.integers(24, 40))
        rule = np.array((185, 205, 235), np.float32)
        for y in range(int(rng.integers(step // 2, step)), h, step):
            sheet[y : y + 1] = sheet[y : y + 1] * 0.4 + rule * 0.6
        x = int(rng.uniform(0.04, 0.1) * w)
        sheet[:, x : x + 2] = np.array((215, 90, 100), np.float32)
    return sheet


def ink_on(sheet: np.ndarray, alpha: np.ndarray, rng: np.random.Generator,
           condition: str) -> np.ndarray:
    """Subtractive ink: each channel keeps the share of light the ink transmits."""
    if condition == "pencil":
        colour = np.array(GRAPHITE, np.float32)
        grain = 0.55 + 0.45 * (value_noise(alpha.shape, rng, cell=1.5, octaves=1) + 1) / 2
        alpha = alpha * grain * rng.uniform(0.75, 0.95)
    else:
        colour = np.array(list(INKS.values())[int(rng.integers(len(INKS)))], np.float32)
        alpha = alpha * rng.uniform(0.85, 1.0)
    transmit = colour / 255.0
    a = alpha[..., None]
    return sheet * (1 - a + a * transmit)


def object_on(sheet: np.ndarray, alpha: np.ndarray, rgb: np.ndarray,
              rng: np.random.Generator) -> np.ndarray:
    """An opaque object (a photographed thing, not ink) with a soft contact shadow."""
    shift = rng.integers(2, 7, 2)
    shadow = ndimage.gaussian_filter(np.roll(alpha, tuple(shift), (0, 1)), rng.uniform(3, 7))
    sheet = sheet * (1 - rng.uniform(0.25, 0.45) * shadow)[..., None]
    a = alpha[..., None]
    return sheet * (1 - a) + rgb * a


def homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3x3 H with dst ~ H src for four point pairs (direct linear transform, SVD)."""
    rows = []
    for (x, y), (u, v) in zip(src, dst, strict=True):
        rows.append([-x, -y, -1, 0, 0, 0, u * x, u * y, u])
        rows.append([0, 0, 0, -x, -y, -1, v * x, v * y, v])
    _, _, vt = np.linalg.svd(np.asarray(rows, float))
    return vt[-1].reshape(3, 3) / vt[-1, -1]


def warp(page: np.ndarray, out_h: int, out_w: int, quad: np.ndarray, k: float,
         background: np.ndarray | None) -> np.ndarray:
    """The page seen by the camera: its corners land on `quad` (output pixels), the lens bends
    by `k` (radial), and what lies outside the page is `background` (an out_h x out_w image;
    None: the page's edge pixels continue). The mapping is computed exactly on a grid of
    output cells (CELLS) and handed to PIL's mesh transform, which samples each cell bilinearly."""
    h, w = page.shape[:2]
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], float)
    inverse = homography(quad, corners)  # output pixel -> page pixel
    cx, cy, norm = out_w / 2, out_h / 2, max(out_w, out_h) / 2
    gx, gy = np.meshgrid(np.linspace(0, out_w, CELLS + 1), np.linspace(0, out_h, CELLS + 1))
    bend = 1 + k * ((gx - cx) ** 2 + (gy - cy) ** 2) / norm ** 2
    xd, yd = cx + (gx - cx) * bend, cy + (gy - cy) * bend
    z = inverse[2, 0] * xd + inverse[2, 1] * yd + inverse[2, 2]
    u = (inverse[0, 0] * xd + inverse[0, 1] * yd + inverse[0, 2]) / z
    v = (inverse[1, 0] * xd + inverse[1, 1] * yd + inverse[1, 2]) / z
    gx, gy = np.rint(gx).astype(int), np.rint(gy).astype(int)
    mesh = []
    for r in range(CELLS):
        for c in range(CELLS):
            box = (gx[r, c], gy[r, c], gx[r + 1, c + 1], gy[r + 1, c + 1])
            src = (u[r, c], v[r, c], u[r + 1, c], v[r + 1, c], u[r + 1, c + 1],
                   v[r + 1, c + 1], u[r, c + 1], v[r, c + 1])
            mesh.append((tuple(map(int, box)), tuple(map(float, src))))
    rgba = np.dstack([np.clip(page, 0, 255), np.full((h, w), 255, np.float32)]).astype(np.uint8)
    image = Image.fromarray(rgba, mode="RGBA")
    if background is None:  # no visible edge: pad the page with its own border first
        pad = max(h, w) // 3
        image = Image.fromarray(np.pad(rgba, ((pad, pad), (pad, pad), (0, 0)), mode="edge"),
                                mode="RGBA")
        mesh = [(box, tuple(v + pad for v in q)) for box, q in mesh]
    seen = image.transform((out_w, out_h), Image.Transform.MESH, mesh,
                           resample=Image.Resampling.BILINEAR)
    out = np.asarray(seen, dtype=np.float32)
    if background is None:
        return out[..., :3]
    alpha = out[..., 3:] / 255.0
    return out[..., :3] * alpha + background * (1 - alpha)


def light(img: np.ndarray, rng: np.random.Generator, condition: str) -> np.ndarray:
    h, w = img.shape[:2]
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    # vignetting: cos^4 of the angle off the axis; focal length sets how strong
    centre = np.array([w, h]) * (0.5 + rng.uniform(-0.15, 0.15, 2))
    corner = math.hypot(max(centre[0], w - centre[0]), max(centre[1], h - centre[1]))
    falloff = rng.uniform(0.45, 0.7) if condition == "vignette" else rng.uniform(0.88, 1.0)
    theta = math.acos(falloff ** 0.25)  # the corner's angle for that falloff
    f = corner / max(math.tan(theta), 1e-3)
    cos = f / np.sqrt(f * f + (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2)
    gain = cos ** 4 * rng.uniform(0.92, 1.06)
    if condition == "dim":
        gain = gain * rng.uniform(0.3, 0.5)
    img = img * gain[..., None]
    if condition == "tinted":
        tint = np.array([1.12, 1.0, 0.72] if rng.random() < 0.5 else [0.78, 0.95, 1.12])
    else:
        tint = 1 + rng.uniform(-0.03, 0.03, 3)
    img = img * tint.astype(np.float32)
    if condition == "hard-shadow":  # an object's edge: a half-plane with a bite, sharp-ish
        a = rng.uniform(0, 2 * math.pi)
        d = (xx - w / 2) * math.cos(a) + (yy - h / 2) * math.sin(a)
        d = d - rng.uniform(-0.25, 0.15) * min(w, h)
        bite = np.hypot(xx - rng.uniform(0, w), yy - rng.uniform(0, h)) - rng.uniform(0.1, 0.3) \
            * min(w, h)
        edge = np.minimum(d, -bite) if rng.random() < 0.5 else d
        penumbra = rng.uniform(1.5, 6)
        inside = 1 / (1 + np.exp(np.clip(-edge / penumbra, -50, 50)))
        img = img * (1 - rng.uniform(0.35, 0.6) * inside)[..., None]
    if condition == "spotlight":  # a specular spot: light added on top, colourless
        c = np.array([w, h]) * rng.uniform(0.2, 0.8, 2)
        s = rng.uniform(0.15, 0.35) * max(w, h)
        spot = np.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2) / (2 * s * s))
        img = img + rng.uniform(50, 110) * spot[..., None]
    return img


def lens_blur(img: np.ndarray, rng: np.random.Generator, condition: str, scale: float
              ) -> np.ndarray:
    if condition == "defocus":
        r = max(1.5, rng.uniform(0.025, 0.05) * scale)
        n = math.ceil(r)
        yy, xx = np.mgrid[-n : n + 1, -n : n + 1]
        kernel = np.clip(r + 0.5 - np.hypot(xx, yy), 0, 1)
    elif condition == "motion":
        length = max(3.0, rng.uniform(0.04, 0.09) * scale)
        a = rng.uniform(0, math.pi)
        n = math.ceil(length / 2) + 1
        kernel = np.zeros((2 * n + 1, 2 * n + 1))
        for t in np.linspace(-length / 2, length / 2, int(4 * length)):
            kernel[round(n + t * math.sin(a)), round(n + t * math.cos(a))] += 1
    elif rng.random() < 0.5:  # a phone's slight softness
        return ndimage.gaussian_filter(img, (0.6, 0.6, 0))
    else:
        return img
    kernel = (kernel / kernel.sum()).astype(np.float32)
    n = kernel.shape[0] // 2  # pad with the edge: no dark frame from the zeros outside
    padded = np.pad(img, ((n, n), (n, n), (0, 0)), mode="edge")
    return np.stack([signal.fftconvolve(padded[..., c], kernel, mode="valid")
                     for c in range(3)], -1)


def sensor(img: np.ndarray, rng: np.random.Generator, condition: str) -> Image.Image:
    """Shot noise (Gaussian with the Poisson variance: the counts are large) and read noise,
    the phone's gain in low light, then lossy compression."""
    well = rng.uniform(250, 600) if condition == "dim" else rng.uniform(1500, 6000)
    level = np.clip(img, 0, None)
    read = rng.uniform(1.0, 2.5)
    sigma = np.sqrt(level * (255.0 / well) + read * read)
    out = level + sigma * rng.standard_normal(img.shape, dtype=np.float32)
    if condition == "dim":  # the phone brightens a dark picture: noise and all
        out = out * (200.0 / max(float(np.percentile(out[::4, ::4], 95)), 1.0))
    image = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), mode="RGB")
    buffer = io.BytesIO()
    if rng.random() < 0.3:
        image.save(buffer, format="WEBP", quality=int(rng.integers(40, 90)), method=0)
    else:
        image.save(buffer, format="JPEG", quality=int(rng.integers(45, 92)), subsampling=2)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def photograph(ink: np.ndarray, rng: np.random.Generator, condition: str,
               rgb: np.ndarray | None = None) -> Image.Image:
    """Ink (a float mask, 1 = ink; or an object's alpha with its colours `rgb`, same size)
    on a sheet, photographed under `condition`: an RGB picture."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r} (known: {', '.join(CONDITIONS)})")
    if condition == "far":
        h = int(rng.integers(600, 760))
        w = int(h * rng.uniform(1.25, 1.45))
        height = int(rng.integers(45, 80))
    else:
        h = int(rng.integers(200, 330))
        w = int(h * rng.uniform(0.85, 1.45))
        height = int(h * rng.uniform(0.3, 0.58))
    glyph = scale_ink(ink, height)
    colours = None
    if rgb is not None:
        colours = np.stack([scale_ink(rgb[..., c] / 255.0, height) * 255 for c in range(3)], -1)
    gh, gw = glyph.shape
    if gw > 0.8 * w:  # a long number: a wider sheet
        w = int(gw / 0.75)
    sheet = make_sheet(h, w, rng, condition)
    # anywhere but near the edges (the camera's turn and tilt must not cut the ink off)
    spread = 0.88 if condition == "far" else 0.76
    y = int((0.5 + rng.uniform(-spread, spread) / 2) * (h - gh))
    x = int((0.5 + rng.uniform(-spread, spread) / 2) * (w - gw))
    alpha = np.zeros((h, w), np.float32)
    alpha[y : y + gh, x : x + gw] = glyph
    if colours is None:
        page = ink_on(sheet, alpha, rng, condition)
    else:
        full = np.zeros((h, w, 3), np.float32)
        full[y : y + gh, x : x + gw] = colours
        page = object_on(sheet, alpha, full, rng)

    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], float)
    if condition == "desk":  # the sheet lies on a table, seen from above at a slant
        out_h, out_w = int(h * 1.35), int(w * 1.35)
        desk = np.array(DESKS[int(rng.integers(len(DESKS)))], np.float32)
        grain = value_noise((out_h, out_w), rng, cell=rng.uniform(3, 12), octaves=3)
        background = desk * (1 + 0.12 * grain)[..., None]
        quad = corners + np.array([out_w - w, out_h - h]) / 2 + \
            rng.uniform(-0.08, 0.08, (4, 2)) * np.array([w, h])
    else:
        out_h, out_w = h, w
        amount = rng.uniform(0.05, 0.14) if condition == "tilt" else rng.uniform(0.0, 0.025)
        quad = corners + rng.uniform(-amount, amount, (4, 2)) * np.array([w, h])
        background = None
    turn = math.radians(rng.uniform(-12, 12) if condition in ("tilt", "desk")
                        else rng.uniform(-4, 4))
    middle = quad.mean(0)
    quad = (quad - middle) @ np.array([[math.cos(turn), math.sin(turn)],
                                       [-math.sin(turn), math.cos(turn)]]) + middle
    k = rng.uniform(-0.06, 0.06)
    img = warp(page, out_h, out_w, quad, k, background)
    img = light(img, rng, condition)
    img = lens_blur(img, rng, condition, float(height))
    return sensor(img, rng, condition)
