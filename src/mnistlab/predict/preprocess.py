"""Bring any digit image into MNIST's form, the way the data set itself was made.

MNIST digits are white on black, their ink fitted into a 20x20 box keeping the aspect ratio
(antialiased), then pasted into a 28x28 field so that the centre of mass sits at pixel (14, 14)
(measured on the test set: mean 13.99, 14.01). A network trained on MNIST has only ever seen
that, so a photo of a digit on paper must be brought to the same form before it is classified.
A photo is not a scan: the light drifts across the sheet, shadows fall on it, the paper may be
ruled, and the digit may be small in a large picture. So (docs/predict.md has the details):

    grayscale (transparent pixels composited on white), large photos reduced to 1024 px
    -> a sheet photographed lying on a table: the table painted over in the paper's level
    -> invert when the ink is darker than the background (the border pixels)
    -> estimate the paper's brightness locally (a coarse grid of low percentiles, opened so
       that strokes drop out) and measure ink relative to it (1 - pixel / paper), which
       cancels uneven light and soft shadows
    -> adaptive threshold (Otsu on that illumination-free ink map, never below the paper's
       noise floor), ruled or squared paper lines dropped (level, or askew from edge to
       edge of the paper, a margin line too), connected pieces labelled
    -> keep the digit's connected ink (the largest, most central piece and the pieces close
       to it), drop specks and stray marks
    -> crop to it -> longer side to 20 px -> centre by centre of mass in 28x28.

A clean picture - a drawing canvas, a synthetic image: the border one exact value and every
pixel on one side of it (clean_ink) - takes a fast path: no plane fit and no search for the
darkest and brightest pixels to tell the ink's side, and no paper estimate where it is
provably one level. Each skipped step would have changed nothing, so the result is the same,
bit for bit (tests/test_preprocess_fast.py); photos, with their noise and uneven light, are
never clean. `Prepared.clean` says which path was taken; `fast=False` forces the full one.

`prepare(image)` also says what looks wrong with the input (`Prepared.problems`: a single
dot, too many separate pieces); `to_mnist` returns only the 28x28 array.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps, UnidentifiedImageError

from mnistlab.data.framing import SIZE, frame
from mnistlab.errors import MnistlabError

MIN_CONTRAST = 0.05  # ink must stand out from the background by 5% of the full range
MIN_SIDE = 8  # smaller pictures cannot hold a recognisable digit
ANALYSIS_SIDE = 1024  # larger photos are analysed reduced to this longer side
MAX_PIECES = 5  # more separate pieces of ink than this is not one digit
CORE = 0.6  # the strong core: ink at least this share of the piece's strong ink
SOLID = 0.85  # a blob fills at least this share of its convex hull (blob_like)


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open and fully decode an image file; a one-line MnistlabError naming it if that fails."""
    path = Path(path)
    if path.is_dir():
        raise MnistlabError(f"{path}: is a folder, not an image")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise MnistlabError(f"{path}: no such file") from None
    except OSError as e:
        raise MnistlabError(f"{path}: cannot read ({e.strerror or e})") from None
    if size == 0:
        raise MnistlabError(f"{path}: empty file (0 bytes), not an image")
    try:
        # PIL only warns between one and two times its pixel limit (89 million) and then
        # decodes gigabytes; no digit photo is that large, so the warning is an error here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's notices about odd files (EXIF, ...)
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # takes precedence
            with Image.open(path) as image:
                image.load()  # decode now: a truncated file fails here, not later
                # A copy outlives the file; phone photos are turned upright by their EXIF tag.
                return ImageOps.exif_transpose(image.copy()) or image.copy()
    except UnidentifiedImageError:
        raise MnistlabError(f"{path}: not an image (no readable image format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise MnistlabError(f"{path}: image too large ({e})") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise MnistlabError(f"{path}: unreadable image ({str(e).strip() or type(e).__name__})"
                            ) from None


def grayscale(image: Image.Image) -> np.ndarray:
    """Float32 (H, W) in [0, 1]; transparent pixels count as white paper."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, rgba)
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit PNGs, TIFFs
        array = np.asarray(image.convert("F"), dtype=np.float32)
        top = 65535.0 if array.max() > 255 else 255.0
        return np.clip(array / top, 0.0, 1.0)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def check_size(image: Image.Image) -> None:
    w, h = image.size
    if min(w, h) < MIN_SIDE:
        raise MnistlabError(f"image too small ({w}x{h} px; a digit needs at least "
                            f"{MIN_SIDE}x{MIN_SIDE})")


def border(array: np.ndarray) -> np.ndarray:
    """The outermost ring of pixels, about 2% of the size deep: where the background is."""
    h, w = array.shape
    d = max(1, min(h, w) // 50)
    return np.concatenate([array[:d].ravel(), array[-d:].ravel(),
                           array[d:-d, :d].ravel(), array[d:-d, -d:].ravel()])


# ---- connected pieces of ink, without scipy -------------------------------------------------

@dataclass(frozen=True)
class Components:
    """8-connected components of a binary mask. `labels` is 0 for background, k + 1 for
    component k; bounding boxes have exclusive ends."""

    labels: np.ndarray  # int32 (H, W)
    area: np.ndarray  # (n,) pixels
    x0: np.ndarray
    y0: np.ndarray
    x1: np.ndarray
    y1: np.ndarray

    def __len__(self) -> int:
        return len(self.area)


def runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Horizontal runs of True: (row, start, end exclusive), in row-major order."""
    h, w = mask.shape
    padded = np.zeros((h, w + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    step = np.diff(padded, axis=1)
    rows, starts = np.nonzero(step == 1)
    _, ends = np.nonzero(step == -1)
    return rows, starts, ends


def label(mask: np.ndarray) -> Components:
    """Label the 8-connected components of `mask`, vectorised: runs are the nodes, runs in
    neighbouring rows that touch (diagonals included) the edges, and labels spread along the
    edges by repeated minimum with pointer jumping until nothing changes."""
    h, w = mask.shape
    rows, starts, ends = runs(mask)
    n = len(rows)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Components(np.zeros((h, w), np.int32), empty, empty, empty, empty, empty)
    stride = w + 2
    start_key = rows * stride + starts
    end_key = rows * stride + ends
    # Runs of row r + 1 that touch run a: start <= end_a and end >= start_a (diagonals count).
    lo = np.searchsorted(end_key, (rows + 1) * stride + starts, side="left")
    hi = np.searchsorted(start_key, (rows + 1) * stride + ends, side="right")
    counts = np.clip(hi - lo, 0, None)
    a = np.repeat(np.arange(n), counts)
    offsets = np.cumsum(counts) - counts
    b = np.repeat(lo, counts) + (np.arange(counts.sum()) - np.repeat(offsets, counts))
    parent = np.arange(n)
    while len(a):
        low = np.minimum(parent[a], parent[b])
        new = parent.copy()
        np.minimum.at(new, a, low)
        np.minimum.at(new, b, low)
        np.minimum.at(new, parent, new)  # carry the minimum to the old roots too
        for _ in range(64):  # pointer jumping: every run points at its root
            jumped = new[new]
            if np.array_equal(jumped, new):
                break
            new = jumped
        if np.array_equal(new, parent):
            break
        parent = new
    roots, comp = np.unique(parent, return_inverse=True)
    lengths = ends - starts
    flat = np.repeat(rows * w + starts - np.cumsum(lengths) + lengths, lengths) + np.arange(
        lengths.sum())
    labels = np.zeros(h * w, dtype=np.int32)
    labels[flat] = np.repeat(comp + 1, lengths)
    k = len(roots)
    area = np.bincount(comp, weights=lengths, minlength=k).astype(np.int64)
    x0 = np.full(k, w, np.int64)
    y0 = np.full(k, h, np.int64)
    x1 = np.zeros(k, np.int64)
    y1 = np.zeros(k, np.int64)
    np.minimum.at(x0, comp, starts)
    np.minimum.at(y0, comp, rows)
    np.maximum.at(x1, comp, ends)
    np.maximum.at(y1, comp, rows + 1)
    return Components(labels.reshape(h, w), area, x0, y0, x1, y1)


# ---- the local algorithm ---------------------------------------------------------------------

def otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of values in [0, 1]: the split that maximises between-class variance."""
    # Zeros (paper, often most of a picture) all fall in the first bin: counted, not binned.
    nonzero = values[values != 0]
    hist, edges = np.histogram(nonzero, bins=bins, range=(0.0, 1.0))
    hist[0] += values.size - nonzero.size
    p = hist.astype(np.float64) / max(1, hist.sum())
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)
    m0 = np.cumsum(p * centres)
    total = m0[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total * w0 - m0) ** 2 / (w0 * (1 - w0))
    between[~np.isfinite(between)] = 0
    return float(edges[int(np.argmax(between)) + 1])


def min_filter(array: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(array.astype(np.float32), mode="F")
                      .filter(ImageFilter.MinFilter(size)), dtype=np.float32)


def max_filter(array: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(array.astype(np.float32), mode="F")
                      .filter(ImageFilter.MaxFilter(size)), dtype=np.float32)


def widen(row: np.ndarray) -> np.ndarray:
    """A 1-D boolean row dilated by one pixel each way."""
    out = row.copy()
    out[1:] |= row[:-1]
    out[:-1] |= row[1:]
    return out


def dilate(mask: np.ndarray, size: int = 3) -> np.ndarray:
    """A boolean mask grown by size // 2 pixels each way (a size x size square): shifted ORs,
    the same as a maximum filter and several times cheaper than one on floats."""
    out = mask.astype(bool)  # a copy
    for _ in range(size // 2):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        out = grown.copy()
        out[:, 1:] |= grown[:, :-1]
        out[:, :-1] |= grown[:, 1:]
    return out


def erode(mask: np.ndarray) -> np.ndarray:
    """A boolean mask shrunk by one pixel each way (3x3); pixels beyond the edge count as
    the edge pixel, as in PIL's minimum filter."""
    shrunk = mask.copy()
    shrunk[1:] &= mask[:-1]
    shrunk[:-1] &= mask[1:]
    out = shrunk.copy()
    out[:, 1:] &= shrunk[:, :-1]
    out[:, :-1] &= shrunk[:, 1:]
    return out


def ink_up_local(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The picture with the ink bright, and its local background.

    Which side the ink is on: the light may drift across a photo more than the ink stands
    out, and the ink may be a tiny share of it, so the picture is first flattened by a
    plane fitted to its border (where the paper is), then the darkest and the brightest few
    pixels (1 in 20,000, at least 10) are compared with the paper: the ink is the side that
    lies farther from it."""
    h, w = gray.shape
    d = max(1, min(h, w) // 50)
    ring = np.zeros((h, w), bool)
    ring[:d], ring[-d:], ring[:, :d], ring[:, -d:] = True, True, True, True
    yy, xx = np.nonzero(ring)
    design = np.stack([np.ones(len(yy)), xx / w, yy / h], axis=1)
    coef = np.linalg.lstsq(design, gray[yy, xx].astype(np.float64), rcond=None)[0]
    rows = np.arange(h, dtype=np.float64)[:, None] / h
    cols = np.arange(w, dtype=np.float64)[None, :] / w
    flat = (gray - (coef[0] + coef[1] * cols + coef[2] * rows)).ravel()
    level = float(np.median(flat[ring.ravel()]))
    k = max(10, flat.size // 20000)
    darkest = float(np.partition(flat, k)[:k].mean())
    brightest = float(np.partition(flat, flat.size - k)[-k:].mean())
    v = 1.0 - gray if level - darkest > brightest - level else gray
    return v, background(v)


def cell_samples(v: np.ndarray) -> tuple[int, np.ndarray, int]:
    """The coarse grid `background` works on: the cell size, the sampled pixels of each cell
    (gh, gw, n) and which order statistic (k-th smallest, from 0) is the paper's level. `v`
    may be a boolean map of the picture (clean_ink's "is paper"): the same pixels are taken."""
    h, w = v.shape
    cell = max(2, min(h, w) // 24)
    gh, gw = -(-h // cell), -(-w // cell)
    padded = np.pad(v, ((0, gh * cell - h), (0, gw * cell - w)), mode="edge")
    step = max(1, cell // 8)  # a large cell's percentile from every step-th pixel: cheaper
    blocks = padded.reshape(gh, cell, gw, cell)[:, ::step, :, ::step]
    blocks = blocks.transpose(0, 2, 1, 3).reshape(gh, gw, -1)
    return cell, blocks, blocks.shape[2] // 4


def opening_size(gh: int, gw: int) -> int:
    """The window, in cells, of background()'s grey opening of a gh x gw grid."""
    return 5 if min(gh, gw) >= 8 else 3


def background(v: np.ndarray) -> np.ndarray:
    """The paper's level under bright ink, estimated locally: the 25th percentile of each cell
    of a coarse grid (about 24 cells across the shorter side), then a grey opening of the grid
    (minimum, then maximum, over 5x5 cells) so that cells covered by thick strokes take their
    neighbours' paper level, then interpolated back to full size."""
    h, w = v.shape
    cell, blocks, k = cell_samples(v)
    gh, gw = blocks.shape[:2]
    grid = np.partition(blocks, k, axis=2)[:, :, k]
    size = opening_size(gh, gw)
    grid = max_filter(min_filter(grid, size), size)
    full = Image.fromarray(grid.astype(np.float32), mode="F").resize(
        (gw * cell, gh * cell), Image.Resampling.BILINEAR)
    return np.asarray(full, dtype=np.float32)[:h, :w]


def clean_ink(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray | np.float32] | None:
    """For a clean picture (a drawing canvas, a synthetic image, a clean scan): the picture
    with the ink bright and its paper level, exactly as ink_up_local would give them; None
    for anything else, such as a photo.

    Clean means that the border is one exact value, so the plane ink_up_local fits to it is
    flat, and that every pixel lies on one side of that value, at least MIN_CONTRAST away at
    the farthest, so that side is the ink's, as ink_up_local decides. Sensor noise, JPEG
    ringing, light drift, shadows and lines that run off the sheet all break it.

    The paper level is then a single value (returned as such) when near every cell of
    background()'s grid, within its opening window, lies a cell whose sampled pixels are
    more than a quarter exactly paper: that cell's 25th percentile is the paper, and the
    opening gives it to the whole grid. Otherwise (ink filling whole neighbourhoods of
    cells) background() itself is asked."""
    ring = border(gray)
    level = ring[0]
    if not (ring == level).all():
        return None
    low, high = gray.min(), gray.max()
    if low == level and high - level >= MIN_CONTRAST:
        v = gray
    elif high == level and level - low >= MIN_CONTRAST:
        v = 1.0 - gray  # dark ink on light paper, inverted exactly as ink_up_local does
    else:
        return None  # ink on both sides of the background, or none to speak of
    paper = v[0, 0]  # a border pixel
    _, blocks, k = cell_samples(v == paper)
    # 0 where a cell's 25th percentile is the paper, 1 where it is ink; background()'s own
    # minimum filter then says whether every cell is reached by paper.
    inked = (np.count_nonzero(blocks, axis=2) <= k).astype(np.float32)
    if inked.any() and min_filter(inked, opening_size(*inked.shape)).any():
        return v, background(v)
    return v, paper


# ---- the sheet on a table ----------------------------------------------------------------

SHEET_SIDE = 80  # the sheet is looked for with the shorter side reduced to this many pixels
SHEET_STEP = 0.12  # its edge: a brightness step at least this large ...
SHEET_SHARP = 0.6  # ... and at least this share of the sheet-to-table contrast, within 5 px


def sheet_features(image: Image.Image, gray: np.ndarray, size: tuple[int, int]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The picture reduced to `size` (w, h): its grey levels and its paper-likeness (bright
    and unsaturated: grey level times 1 - saturation; grey level alone for a grey picture)."""
    if image.mode != "RGB":
        small = np.asarray(Image.fromarray(gray, mode="F").resize(size, Image.Resampling.BOX),
                           dtype=np.float32)
        return small, small
    rgb = np.asarray(image.resize(size, Image.Resampling.BOX), dtype=np.float32)
    # PIL's grey levels (ITU-R 601-2 luma), averaged: the same as reducing `gray`, cheaper.
    small = (rgb @ np.array([0.299, 0.587, 0.114], np.float32)) / 255.0
    top = rgb.max(2)
    saturation = (top - rgb.min(2)) / np.maximum(top, 1.0)
    return small, small * (1.0 - saturation)


def find_sheet(image: Image.Image, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """A sheet of paper photographed lying on a table, part of the table in view: where the
    sheet is (bool, gray's shape, a little inside its edge) and the picture with the table
    painted over in the sheet's own paper level, so that nothing after this sees the table
    or the sheet's edge as ink. None when the picture is not that.

    The sheet is the largest connected bright, unsaturated region (Otsu's split of the
    paper-likeness, on the picture reduced to SHEET_SIDE) taken with its convex hull (ink
    inside it is sheet too); it must fill that hull (a quadrilateral), cover half the picture
    or more, leave at least 5% of it to the table, and end in a sharp step: a soft shadow's
    edge or a light gradient, which Otsu splits as well, changes slowly across it."""
    h, w = gray.shape
    ring = border(gray)
    if min(h, w) < SHEET_SIDE or (ring == ring[0]).all():
        return None  # too small, or a border of one exact value: a canvas, not a photo
    factor = SHEET_SIDE / min(h, w)
    sw, sh = max(SHEET_SIDE, round(w * factor)), max(SHEET_SIDE, round(h * factor))
    small, paperlike = sheet_features(image, gray, (sw, sh))
    bright = paperlike > otsu(np.clip(paperlike, 0.0, 1.0))
    # The table lies outside a convex sheet, so it reaches the frame's edge: 5% of the
    # picture there touches at least 15% of the edge (a corner). Bright all round: no table.
    edge = border(bright)
    if np.count_nonzero(~edge) < 0.1 * edge.size:
        return None
    pieces = label(bright)
    if len(pieces) == 0:
        return None
    piece = pieces.labels == int(np.argmax(pieces.area)) + 1
    hull = hull_polygon(piece)
    if hull is None:
        return None
    outline = Image.new("L", (sw, sh), 0)
    ImageDraw.Draw(outline).polygon([(float(x), float(y)) for x, y in hull], fill=1)
    sheet = np.asarray(outline, dtype=bool)
    table = ~sheet
    n = sheet.size
    if not 0.05 * n <= np.count_nonzero(table) <= 0.5 * n:
        return None
    if np.count_nonzero(piece) < 0.75 * np.count_nonzero(sheet):
        return None  # the bright region is no quadrilateral (a textured table, a shape)
    inner = erode(erode(sheet))
    inside = inner & ~erode(inner)  # 2-3 px inside the hull's edge
    outside = dilate(sheet, 7) & ~dilate(sheet, 5)  # 2-3 px outside it
    if np.count_nonzero(inside) < 10 or np.count_nonzero(outside) < 10:
        return None
    step = float(np.median(paperlike[inside]) - np.median(paperlike[outside]))
    contrast = float(np.median(paperlike[piece]) - np.median(paperlike[table]))
    if contrast < SHEET_STEP or step < max(SHEET_STEP, SHEET_SHARP * contrast):
        return None  # no table (paper beyond a margin line), or no edge (a soft shadow)
    # The paper's level, ink taken out (a small maximum filter), carried out over the table
    # from the nearest sheet pixels (repeated 3x3 maxima, only where still unknown).
    known = inner
    level = np.where(known, max_filter(small, 5), 0.0).astype(np.float32)
    for _ in range(sw + sh):
        if known.all():
            break
        grown = max_filter(level, 3)
        level = np.where(known, level, grown)
        known = dilate(known)
    full = (w, h)
    paper = np.asarray(Image.fromarray(level, mode="F").resize(full, Image.Resampling.BILINEAR),
                       dtype=np.float32)
    # 3 px in (about 4% of the shorter side), from the frame's edge too (where a sliver of
    # table thinner than a pixel here may lie): the edge's blur and ringing stay outside.
    core = np.pad(sheet, 1)
    for _ in range(3):
        core = erode(core)
    mask = np.asarray(Image.fromarray(core[1:-1, 1:-1].astype(np.uint8) * 255).resize(
        full, Image.Resampling.BILINEAR)) > 127
    return mask, np.where(mask, gray, paper).astype(np.float32)


def line_bands(strength: np.ndarray, level: float, spare: int = 0
               ) -> Iterator[tuple[int, int, int, int]]:
    """Ruled lines as (c0, c1, r0, r1): rows r0..r1 of the strip of columns c0..c1. In each of
    4 vertical strips (so that a line may slant a little), a row is part of a line when one
    unbroken run of ink-like pixels (strength above `level`) crosses 90% of the strip: digits
    leave gaps between them, a printed line does not. Only thin bands of such rows are
    lines: a thick band is a stroke or a shadow (`spare` rows more are allowed, for a band
    widened on purpose)."""
    h, w = strength.shape
    if min(h, w) < 48:  # a small picture is a drawing or a crop, not a ruled sheet
        return
    thick = max(3, round(h / 80)) + spare
    strips = 4 if w >= 160 else 1
    bounds = np.linspace(0, w, strips + 1).astype(int)
    for c0, c1 in pairwise(bounds):
        ink = strength[:, c0:c1] > level
        need = 0.9 * (c1 - c0)
        # A run that long needs that many ink pixels in its row: only such rows are searched.
        candidates = np.nonzero(np.count_nonzero(ink, axis=1) >= need)[0]
        if candidates.size == 0:
            continue
        rows, starts, ends = runs(ink[candidates])
        longest = np.zeros(h, np.int64)
        np.maximum.at(longest, candidates[rows], ends - starts)
        line = longest >= need
        if not line.any():
            continue
        edges = np.diff(np.concatenate([[0], line.astype(np.int8), [0]]))
        for r0, r1 in zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0], strict=True):
            if r1 - r0 <= thick:
                yield int(c0), int(c1), int(r0), int(r1)


def remove_lines(mask: np.ndarray, strength: np.ndarray, level: float,
                 spare: int = 0) -> np.ndarray:
    """Drop ruled (and, on the transposed arrays, squared) paper lines (line_bands). Where a
    stroke crosses a line (ink just above and just below the band) the pixels are kept, so
    the digit is not cut."""
    h = mask.shape[0]
    out = mask.copy()
    for c0, c1, r0, r1 in line_bands(strength, level, spare):
        # Stroke pixels just beyond the band (the band may be a pixel wider in the mask).
        above = mask[max(r0 - 2, 0), c0:c1] if r0 > 1 else np.zeros(c1 - c0, bool)
        below = mask[min(r1 + 1, h - 1), c0:c1] if r1 < h - 1 else np.zeros(c1 - c0, bool)
        crossing = widen(widen(above) & widen(below))
        lo, hi = max(r0 - 1, 0), min(r1 + 1, h)
        out[lo:hi, c0:c1] &= crossing[None, :]
    return out


LONG_LINE = 0.4  # a piece this long (share of the picture's width or height) may be a line
FULL_LINE = 0.7  # a paper line's band holds ink over at least this share of the paper ...
END_GAP = 0.05  # ... and reaches within this share of it of both of the paper's edges
MAX_SLANT = 0.1  # askew lines are looked for up to this slope (about 6 degrees)


def line_slope(rows: np.ndarray, cols: np.ndarray) -> float:
    """The slope (rows per column) along which the pixels line up best: the one whose
    sheared rows (row - slope * col) pile up highest in a single row, in steps fine enough
    that a line drifts by under a pixel across a quarter of a 1024 px picture."""
    slopes = np.linspace(-MAX_SLANT, MAX_SLANT, 81)
    shifted = np.rint(rows[None, :] - slopes[:, None] * cols[None, :]).astype(np.int64)
    shifted -= shifted.min()
    width = int(shifted.max()) + 1
    flat = (shifted + np.arange(len(slopes))[:, None] * width).ravel()
    peaks = np.bincount(flat, minlength=len(slopes) * width).reshape(len(slopes), width).max(1)
    return float(slopes[int(np.argmax(peaks))])


def row_shift(n: int, slope: float) -> np.ndarray:
    """For each of `n` columns, the whole rows a line of `slope` (rows per column) has risen
    by, measured from the middle column: sheared by it, such a line lies level."""
    return np.rint(slope * (np.arange(n) - n / 2)).astype(np.int64)


def shear_index(shape: tuple[int, int], slope: float) -> tuple[np.ndarray, np.ndarray]:
    """For each pixel of an array sheared by `slope`, the row it comes from, and whether that
    row is inside the picture: a line of that slope becomes a row."""
    h, w = shape
    source = np.arange(h)[:, None] + row_shift(w, slope)[None, :]
    return np.clip(source, 0, h - 1), (source >= 0) & (source < h)


def sheared_lines(mask: np.ndarray, strength: np.ndarray, level: float,
                  slope: float) -> np.ndarray:
    """remove_lines along `slope` (rows per column) instead of level: the picture sheared so
    that such lines lie level, their thin bands dropped there, the rest kept."""
    source, inside = shear_index(mask.shape, slope)
    columns = np.broadcast_to(np.arange(mask.shape[1]), mask.shape)
    sheared = mask[source, columns] & inside
    st = strength[source, columns]
    # Sheared by whole pixels, a thin line zigzags between two rows: each row is widened by
    # one pixel up and down, so that it lies in one unbroken band (2 rows spare for that).
    fat, fat_strength = sheared.copy(), st.copy()
    fat[1:] |= sheared[:-1]
    fat[:-1] |= sheared[1:]
    fat_strength[1:] = np.maximum(fat_strength[1:], st[:-1])
    fat_strength[:-1] = np.maximum(fat_strength[:-1], st[1:])
    gone = sheared & ~remove_lines(fat, fat_strength, level, spare=2)
    out = mask.copy()
    out[source[gone], columns[gone]] = False
    return out


def paper_line(m: np.ndarray, lined: np.ndarray, rows: np.ndarray, cols: np.ndarray,
               paper: np.ndarray | None) -> tuple[float, int, int] | None:
    """Whether the pixels (rows, cols) lie along a printed line, nearly level, of the paper:
    (slope, lo, hi: its band of sheared rows) or None. See remove_askew_lines."""
    step = max(1, rows.size // 4000)  # a sample suffices to measure the slope
    slope = line_slope(rows[::step], cols[::step])
    n = m.shape[1]
    if abs(slope) * n < 2:
        return None  # level within a pixel or two: remove_lines has had its chance
    shift = row_shift(n, slope)
    band = np.bincount(rows - shift[cols] + n)  # offset by n: never negative
    peak = int(np.argmax(band))
    lo = hi = peak
    while lo > 0 and band[lo - 1] >= 0.25 * band[peak]:
        lo -= 1
    while hi + 1 < len(band) and band[hi + 1] >= 0.25 * band[peak]:
        hi += 1
    lo, hi = lo - n - 1, hi - n + 1  # a row either side
    if hi - lo > max(3, round(m.shape[0] / 80)) + 4:
        return None  # a thick band: a stroke (as line_bands, with the rows added here)
    # Where the line would run: its middle row at each column, on the paper.
    path = np.rint((lo + hi) / 2 + shift).astype(np.int64)
    along = (path >= 0) & (path < m.shape[0])
    if paper is not None:
        along[along] = paper[path[along], np.nonzero(along)[0]]
    ys, xs = np.nonzero(m | lined)
    on_line = (ys - shift[xs] >= lo) & (ys - shift[xs] <= hi)
    covered = np.zeros(n, bool)
    covered[xs[on_line]] = True
    covered &= along
    ends = np.nonzero(along)[0]
    if not covered.any():
        return None
    inked = np.nonzero(covered)[0]
    reach = END_GAP * ends.size
    if (covered.sum() < FULL_LINE * ends.size or inked[0] - ends[0] > reach
            or ends[-1] - inked[-1] > reach):
        return None  # not from edge to edge of the paper: a stroke, not a line
    return slope, lo, hi


def remove_askew_lines(mask: np.ndarray, strength: np.ndarray, level: float,
                       pieces: Components, lined: tuple[np.ndarray, np.ndarray],
                       paper: np.ndarray | None = None) -> np.ndarray:
    """Ruled lines and margin lines photographed a little askew. line_bands finds lines within
    about 2 degrees of level, and may have taken only parts of them (`lined`: what the level
    passes removed, along rows and along columns).

    A piece of ink that spans LONG_LINE of the picture's width (or height), or what the
    level pass took in that direction, is measured for the slope it lies along; it is a line
    of the paper when its band (the rows of its peak, sheared level), counting what was
    already removed, is thin and holds ink along FULL_LINE of the paper (the picture, or
    `paper`: the sheet found on a table) and to within END_GAP of both its edges: printed
    lines run from edge to edge, a stroke of a digit, however straight and thin, stops short
    of them. Then, the page's slant now known, remove_lines runs along it and across it (the
    other rules, a second margin line), and the line's band goes, except where a stroke
    crosses it (ink just beyond it on both sides). Returns `mask` itself when there is no
    such line."""
    h, w = mask.shape
    if min(h, w) < 48 or len(pieces) == 0:
        return mask
    found = None
    for transposed in (False, True):
        m = mask.T if transposed else mask
        labels = pieces.labels.T if transposed else pieces.labels
        done = lined[1].T if transposed else lined[0]
        if paper is None:  # a line nearly level reaches one end of the picture at least (the
            # other it may leave through a side): no ink there, nothing to measure
            end = int(np.ceil(END_GAP * m.shape[1])) + 1
            if not (m[:, :end].any() or done[:, :end].any() or m[:, -end:].any()
                    or done[:, -end:].any()):
                continue
        span = (pieces.y1 - pieces.y0) if transposed else (pieces.x1 - pieces.x0)
        seeds = [np.nonzero(labels == k + 1)
                 for k in np.nonzero(span >= LONG_LINE * m.shape[1])[0]]
        if np.count_nonzero(done) >= LONG_LINE * m.shape[1]:
            seeds.append(np.nonzero(done))
        for rows, cols in seeds:
            line = paper_line(m, done, rows, cols, None if paper is None
                              else paper.T if transposed else paper)
            if line is not None:
                found = transposed, line
                break
        if found is not None:
            break
    if found is None:
        return mask
    transposed, (slope, lo, hi) = found
    m = mask.T if transposed else mask
    st = strength.T if transposed else strength
    # The page's slant now known: lines along the found one and across it (the rules, a
    # second margin line) first, so that a rule crossing it is not taken for a stroke.
    m = sheared_lines(m, st, level, slope)
    m = sheared_lines(m.T, st.T, level, -slope).T  # across: the same page turned as much
    n = m.shape[1]
    shift = row_shift(n, slope)
    columns = np.arange(n)

    def ink_at(offset: int) -> np.ndarray:  # ink in sheared row `offset`, column by column
        r = offset + shift
        ok = (r >= 0) & (r < m.shape[0])
        out = np.zeros(n, bool)
        out[ok] = m[r[ok], columns[ok]]
        return out

    crossing = widen(widen(ink_at(lo - 2)) & widen(ink_at(hi + 2)))
    ys, xs = np.nonzero(m)
    on_band = (ys - shift[xs] >= lo) & (ys - shift[xs] <= hi) & ~crossing[xs]
    m[ys[on_band], xs[on_band]] = False
    return m.T if transposed else m


def paper_noise(strength: np.ndarray) -> tuple[float, float]:
    """The median of `strength` (>= 0) and its robust standard deviation (1.4826 * MAD)."""
    if np.count_nonzero(strength) < strength.size // 2 - 1:
        return 0.0, 0.0  # both middle values are 0 (paper): the same, without sorting
    centre = float(np.median(strength))
    return centre, 1.4826 * float(np.median(np.abs(strength - centre)))


@dataclass
class Ink:
    """A picture analysed: where the ink is, how strong, and its connected pieces. Arrays are
    at the analysis scale; `scale` maps them back (original = analysis / scale)."""

    strength: np.ndarray  # float32 (H, W): ink relative to the local paper, 0 = paper
    mask: np.ndarray  # bool (H, W): thresholded ink, lines removed
    pieces: Components  # connected pieces of `mask` that are not specks
    keep: np.ndarray  # bool (n,): not a speck
    floor: float  # the paper's noise floor in `strength`
    scale: float  # analysis pixels per original pixel (<= 1)
    clean: bool = False  # a clean picture: the paper steps, provably no-ops, were skipped


def analyse(image: Image.Image, fast: bool = True) -> Ink:
    """Find the ink in a picture: the local-background algorithm described at the top.

    With `fast` (default), a clean picture (clean_ink: a drawing canvas, a synthetic image)
    skips telling the ink's side from a fitted plane and, where it is provably one level,
    the paper estimate: the same ink, found several times faster. `fast=False` always takes
    the full path."""
    check_size(image)
    gray = grayscale(image)
    h, w = gray.shape
    scale = min(1.0, ANALYSIS_SIDE / max(h, w))
    if scale < 1.0:
        size = (max(MIN_SIDE, round(w * scale)), max(MIN_SIDE, round(h * scale)))
        gray = np.asarray(Image.fromarray(gray, mode="F").resize(size, Image.Resampling.BOX),
                          dtype=np.float32)
    clean = clean_ink(gray) if fast else None
    # A photo of a sheet lying on a table: the table is painted over in the paper's level
    # (a canvas, clean, has no table: its fast path stays as it was).
    sheet = find_sheet(image, gray) if clean is None else None
    if sheet is not None:
        gray = sheet[1]
    v, bg = ink_up_local(gray) if clean is None else clean
    # Ink relative to the paper: for dark ink on paper this is 1 - pixel / paper, so a shadow
    # that dims paper and ink alike leaves it unchanged.
    strength = np.clip((v - bg) / np.maximum(1.0 - bg, 0.05), 0.0, 1.0)
    if sheet is not None:
        strength[~sheet[0]] = 0.0
    if float(strength.max()) < MIN_CONTRAST:
        raise MnistlabError("empty image: no ink found")
    # The paper's noise, robustly over the whole picture (ink covers well under half of
    # it); Otsu alone would split the noise itself when the digit is a speck in a big photo.
    centre, sigma = paper_noise(strength if sheet is None else strength[sheet[0]])
    floor = centre + 3.0 * sigma
    threshold = max(otsu(strength), centre + 5.0 * sigma, MIN_CONTRAST)
    mask = strength > threshold
    if not mask.any():
        raise MnistlabError("empty image: no ink found")
    level = max(floor, 0.5 * MIN_CONTRAST)
    # Hysteresis: pieces are grown through fainter ink (half the threshold) and kept when
    # they hold some strong ink, so a stroke that fades for a moment stays one piece.
    raw = strength > max(level, 0.5 * threshold)
    level_rows = remove_lines(raw, strength, level)
    weak = remove_lines(level_rows.T, strength.T, level).T
    grown = label(weak)
    askew = remove_askew_lines(weak, strength, level, grown,
                               (raw & ~level_rows, level_rows & ~weak),
                               None if sheet is None else sheet[0])
    if askew is not weak:
        weak, grown = askew, label(askew)
    strong = np.zeros(len(grown) + 1, bool)
    strong[grown.labels[mask & weak]] = True
    strong[0] = False
    if len(grown) and strong[1:].all():
        mask, pieces = weak, grown  # every piece holds strong ink: all kept, already labelled
    else:
        mask = strong[grown.labels]
        pieces = label(mask)
    if len(pieces) == 0:
        raise MnistlabError("empty image: no ink found")
    largest = float(pieces.area.max())
    # Specks are dropped, unless the speck is all there is (a one-pixel tap): that is kept,
    # to be judged "too little ink", not lost.
    keep = pieces.area >= min(max(3.0, 0.02 * largest), largest)
    return Ink(strength, mask, pieces, keep, floor, scale, clean is not None)


def soft_ink(ink: Ink, member: np.ndarray,
             box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """The ink of the pieces in `member` (bool per piece), soft-edged, strongest ink at 1.

    With `box` (x0, y0, x1, y1: the members' bounding box), only that part of the picture,
    the same values as the whole picture's there: cheap for each of many digits."""
    labels, strength = ink.pieces.labels, ink.strength
    if box is not None:
        x0, y0, x1, y1 = box
        labels, strength = labels[y0:y1, x0:x1], strength[y0:y1, x0:x1]
    chosen = np.concatenate([[False], member])[labels]
    near = dilate(chosen, 3)
    values = strength[chosen]
    top = float(np.percentile(values, 90)) if values.size else 1.0
    floor = min(ink.floor, 0.5 * top)
    return np.clip((strength - floor) / max(top - floor, 1e-3), 0.0, 1.0) * near


def hull_polygon(mask: np.ndarray) -> np.ndarray | None:
    """The convex hull of the True pixels (as unit squares), its corners (x, y) in order; None
    for fewer than 3 distinct corners. The outline of each row suffices, so the hull is built
    from at most 4 corners per row (monotone chain)."""
    rows = np.nonzero(mask.any(1))[0]
    left = mask[rows].argmax(1)
    right = mask.shape[1] - mask[rows, ::-1].argmax(1)
    points = np.unique(np.concatenate([
        np.stack([left, rows], 1), np.stack([left, rows + 1], 1),
        np.stack([right, rows], 1), np.stack([right, rows + 1], 1)]), axis=0)
    if len(points) < 3:
        return None

    def turn(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> int:  # > 0: counter-clockwise
        return int((a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]))

    def chain(ordered: np.ndarray) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for q in ordered:
            while len(out) >= 2 and turn(out[-2], out[-1], q) <= 0:
                out.pop()
            out.append(q)
        return out

    lower, upper = chain(points), chain(points[::-1])
    return np.array(lower[:-1] + upper[:-1], dtype=np.float64)


def hull_area(mask: np.ndarray) -> float:
    """Area of the convex hull of the ink pixels (as unit squares)."""
    hull = hull_polygon(mask)
    if hull is None:
        return float(mask.sum())
    x, y = hull[:, 0], hull[:, 1]
    return 0.5 * abs(float(x @ np.roll(y, 1) - y @ np.roll(x, 1)))


def blob_like(mask: np.ndarray) -> bool:
    """A dot or blob rather than a drawn shape, judged on the ink's own box and strokes,
    whatever its size in the picture: its longer side is under 2.5 times its thickest stroke
    (the depth to which it can be eroded before it vanishes), and it fills its convex hull
    (SOLID): a tap, a disc or a smudge. A blurred or thick-penned digit can be as thick as
    that (a 4 whose triangle filled in), but its hull still holds much paper."""
    rows, cols = np.nonzero(mask)
    crop = mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    side = max(crop.shape)
    if side > 64:  # erosion depth scales with the picture; keep it cheap
        factor = 64 / side
        crop = np.asarray(Image.fromarray(crop.astype(np.uint8) * 255).resize(
            (max(1, round(crop.shape[1] * factor)), max(1, round(crop.shape[0] * factor))),
            Image.Resampling.BOX)) > 127
        side = max(crop.shape)
    if not crop.any():
        return True
    current = np.pad(crop, 1)
    depth = 0
    while current.any() and depth < side:
        current = erode(current)
        depth += 1
    if side >= 2.5 * (2 * depth - 1):
        return False
    return float(crop.sum()) >= SOLID * hull_area(crop)


def choose_digit(ink: Ink) -> tuple[np.ndarray, list[str]]:
    """The pieces that make up the digit (bool per piece) and what looks wrong with them."""
    p = ink.pieces
    h, w = p.labels.shape
    candidates = np.nonzero(ink.keep)[0]
    cx = (p.x0 + p.x1) / 2.0
    cy = (p.y0 + p.y1) / 2.0
    distance = np.hypot((cx - w / 2) / w, (cy - h / 2) / h)
    touches = (p.x0 == 0) | (p.y0 == 0) | (p.x1 == w) | (p.y1 == h)
    score = p.area / (1.0 + (2.0 * distance) ** 2) * np.where(touches, 0.25, 1.0)
    main = candidates[np.argmax(score[candidates])]
    member = np.zeros(len(p), bool)
    member[main] = True
    box = [p.x0[main], p.y0[main], p.x1[main], p.y1[main]]
    changed = True
    while changed:  # grow: pieces within a quarter of the digit's size join it
        changed = False
        reach = 0.25 * max(box[2] - box[0], box[3] - box[1])
        gap_x = np.maximum(0, np.maximum(p.x0 - box[2], box[0] - p.x1))
        gap_y = np.maximum(0, np.maximum(p.y0 - box[3], box[1] - p.y1))
        near = ink.keep & ~member & (gap_x <= reach) & (gap_y <= reach)
        if near.any():
            member |= near
            box = [min(box[0], p.x0[member].min()), min(box[1], p.y0[member].min()),
                   max(box[2], p.x1[member].max()), max(box[3], p.y1[member].max())]
            changed = True
    problems: list[str] = []
    significant = ink.keep & (p.area >= 0.1 * p.area[member].max())
    count = int(significant.sum())
    if count > MAX_PIECES:
        problems.append(f"too many separate pieces ({count})")
    chosen = np.concatenate([[False], member])[p.labels]
    # Judged on the ink's strong core: blur or a low threshold can fill a small digit's
    # counters in the mask, while its strongest ink still draws the strokes.
    strength = ink.strength[chosen]
    core = chosen & (ink.strength >= CORE * float(np.percentile(strength, 90)))
    if blob_like(chosen) and blob_like(core if core.any() else chosen):
        problems.append("too little ink (a dot, not a drawn shape)")
    return member, problems


@dataclass
class Prepared:
    """A picture in MNIST form, and what looks wrong with it as a digit. A non-empty
    `problems` means "not a digit" whatever the model says."""

    array: np.ndarray  # uint8 (28, 28)
    problems: list[str] = field(default_factory=list)
    box: tuple[int, int, int, int] | None = None  # x, y, width, height in the original
    clean: bool = False  # a clean picture, read by the fast path (see clean_ink)


def original_box(ink: Ink, x0: float, y0: float, x1: float, y1: float,
                 size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A box at the analysis scale -> (x, y, width, height) in the original picture."""
    s = ink.scale
    ox0, oy0 = int(np.floor(x0 / s)), int(np.floor(y0 / s))
    ox1, oy1 = min(size[0], int(np.ceil(x1 / s))), min(size[1], int(np.ceil(y1 / s)))
    return ox0, oy0, ox1 - ox0, oy1 - oy0


def prepare(image: Image.Image, denoise: bool = True, fast: bool = True) -> Prepared:
    """A picture of one digit -> its MNIST form, with the problems that make it look like no
    digit (a single dot, too many separate pieces). Raises MnistlabError for a picture that is
    too small or has no ink at all.

    `denoise=False` keeps the faint texture (everything above the local paper level) inside
    the digit's box, instead of only the digit's own connected ink. `fast=False` reads a
    clean picture the long way too (the same result; for comparison)."""
    return prepare_ink(analyse(image, fast), image.size, denoise)


def prepare_ink(ink: Ink, size: tuple[int, int], denoise: bool = True) -> Prepared:
    """`prepare` for a picture already analysed (`analyse`), of `size` (width, height): so
    that one analysis can serve both a single digit and a number (predict.reader)."""
    member, problems = choose_digit(ink)
    p = ink.pieces
    box = (p.x0[member].min(), p.y0[member].min(), p.x1[member].max(), p.y1[member].max())
    if denoise:
        soft = soft_ink(ink, member)
    else:
        soft = np.zeros_like(ink.strength)
        x0, y0, x1, y1 = box
        soft[y0:y1, x0:x1] = ink.strength[y0:y1, x0:x1]
        soft = soft / max(float(soft.max()), 1e-6)
    return Prepared(frame(soft), problems, original_box(ink, *box, size), ink.clean)


def to_mnist(image: Image.Image, denoise: bool = True) -> np.ndarray:
    """Any digit image -> uint8 (28, 28), white digit on black, framed as in MNIST (the
    array of `prepare`). `denoise=False` keeps faint background texture. Raises
    MnistlabError for a blank picture ("empty image: no ink found") or one too small to hold
    a digit ("image too small ...")."""
    return prepare(image, denoise).array


def from_array(array: np.ndarray) -> np.ndarray:
    """An image that is already 28x28 (0-255, or floats in 0-1) -> uint8 (28, 28), unchanged
    in framing: it is taken to be in MNIST form already (white on black, centred)."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.shape != (SIZE, SIZE):
        raise MnistlabError(f"image array: expected shape (28, 28), got {tuple(array.shape)}")
    if array.dtype == np.uint8:
        return array.copy()
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise MnistlabError(f"image array: expected numbers, got dtype {array.dtype}")
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        raise MnistlabError("image array: contains NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if low < 0 or high > 255:
        raise MnistlabError(f"image array: values must be in 0-255 (or 0-1), "
                            f"found {low:g}..{high:g}")
    if np.issubdtype(array.dtype, np.floating) and high <= 1.0:
        values = values * 255.0
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)
