"""Read a whole number: split a picture into its digits, left to right, each in MNIST form.

The ink is found exactly as for one digit (mnistlab.predict.preprocess.analyse: local paper
level, adaptive threshold, ruled lines and specks dropped, connected pieces; a clean canvas
takes the fast path there, with the same result). Then:

1. Pieces that share at least half of their columns belong to one digit (a 7 and its
   crossbar, the two strokes of a 4 written in two goes); a flat piece (the flag of a 5
   written apart) joins the digit whose columns it overlaps or nearly touches.
2. Stray marks much smaller than the digits (a full stop, dust) are dropped: a group whose
   height and width are both under 35% of the tallest digit's height.
3. A group much wider than a digit (digits that touch) is split into as many digits as its
   width holds, each cut near where it is expected at a gap, a thin column or a valley of
   the outline; a cut that finds none of these, or would leave a flat part, is not made.
4. Each digit is cropped from its own ink only and framed the MNIST way (20 px box, centre of
   mass at 14, 14).

The work is bounded, whatever the picture: more than `max_pieces` pieces of ink (a page of
dots) or more than `max_digits` digits is refused before the digits are read, and so is a
reading that outlasts its `deadline` (NumberLimitError, a MnistlabError).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from PIL import Image

from mnistlab.errors import MnistlabError
from mnistlab.predict.preprocess import Ink, analyse, frame, original_box, soft_ink

DIGIT_ASPECT = 0.75  # a wide handwritten digit (0, 2, 4) is about 3/4 as wide as tall
SPLIT_ASPECT = 1.3  # a group wider than this times its height holds more than one digit
GOOD_CUT_INK = 0.2  # a cut through at most this share of the inkiest column's ink ...
GOOD_CUT_DEPTH = 0.2  # ... or this deep (share of the height) in the outline is believable
FLAT = 0.4  # a piece less tall than this share of the tallest digit is a bar or flag
SMALL = 0.35  # groups smaller than this share of the tallest digit are stray marks
MAX_NUMBER_PIECES = 256  # pieces of ink (not specks) examined in one picture of a number
MAX_NUMBER_DIGITS = 64  # digits read from one picture


class NumberLimitError(MnistlabError):
    """A picture that would take too much work to read as a number: too many pieces of ink,
    too many digits, or past the time allowed. The picture is fine; there is just too much."""


@dataclass(frozen=True)
class DigitCrop:
    box: tuple[int, int, int, int]  # x, y, width, height in the original picture's pixels
    array: np.ndarray  # uint8 (28, 28), MNIST form


def group_pieces(ink: Ink) -> list[np.ndarray]:
    """Pieces (indices) grouped into digits: pieces whose column ranges overlap by at least
    half of the narrower one, or that lie inside another's columns, form one digit."""
    p = ink.pieces
    order = [int(i) for i in np.nonzero(ink.keep)[0]]
    order.sort(key=lambda i: (p.x0[i], p.y0[i]))
    groups: list[list[int]] = []
    spans: list[list[int]] = []  # [x0, x1] of each group
    for i in order:
        x0, x1 = int(p.x0[i]), int(p.x1[i])
        best = None
        for g, (g0, g1) in enumerate(spans):
            overlap = min(x1, g1) - max(x0, g0)
            if overlap > 0 and overlap >= 0.5 * min(x1 - x0, g1 - g0):
                best = g
        if best is None:
            groups.append([i])
            spans.append([x0, x1])
        else:
            groups[best].append(i)
            spans[best] = [min(spans[best][0], x0), max(spans[best][1], x1)]
    # A flat group (the flag of a 5, the bar of a 7 or 4 written apart) joins the group whose
    # columns it overlaps most, even by less than half, or that it nearly touches.
    tops = [min(p.y0[i] for i in g) for g in groups]
    bottoms = [max(p.y1[i] for i in g) for g in groups]
    tallest = max(b - t for t, b in zip(tops, bottoms, strict=True))
    merged = list(range(len(groups)))
    for g in range(len(groups)):
        if bottoms[g] - tops[g] >= FLAT * tallest:
            continue
        overlaps = [(min(spans[g][1], spans[o][1]) - max(spans[g][0], spans[o][0]), o)
                    for o in range(len(groups))
                    if o != g and bottoms[o] - tops[o] >= FLAT * tallest]
        best_overlap, other = max(overlaps, default=(-tallest, g))
        if best_overlap > -0.1 * tallest:  # overlapping, or just beside it
            merged[g] = other
    out: dict[int, list[int]] = {}
    for g, target in enumerate(merged):
        out.setdefault(target, []).extend(groups[g])
    return [np.array(members) for members in out.values()]


def count_digits(width: int, height: float, widths: np.ndarray) -> int:
    """How many touching digits a group of this size holds. Beside two or more other digits,
    their typical width is the yardstick (at least 0.6 of the height, so that narrow 1s do
    not make every 0 look double): wider than 1.6 of them, and than its height, is several.
    Alone, wider than SPLIT_ASPECT times its height is several (1.7% of MNIST's digits are
    that wide)."""
    if len(widths) >= 3:
        typical = max(float(np.median(widths)), 0.6 * height)
        if width > max(1.6 * typical, 1.05 * height):
            return max(2, round(width / typical))
        return 1
    if width > SPLIT_ASPECT * height:
        return max(2, round(width / (DIGIT_ASPECT * height)))
    return 1


def split_points(region: np.ndarray, parts: int) -> list[int]:
    return split_candidates(region, parts)[0]


def split_candidates(region: np.ndarray, parts: int) -> tuple[list[int], bool]:
    """Columns where to cut a run of `parts` touching digits (`region`: their ink), and
    whether every cut is believable. Near each
    evenly spaced cut (within a third of a digit's width), the best column has little ink and
    lies in a valley of the outline: its topmost ink low and its lowest ink high, as where two
    round digits touch (the inside of a 0 has little ink too, but its outline is high)."""
    h, width = region.shape
    ink = region > 0
    profile = region.sum(0)
    profile = profile / max(float(profile.max()), 1e-6)
    rows = np.arange(h)[:, None]
    top = np.where(ink, rows, h).min(0)
    bottom = np.where(ink, rows, -1).max(0)
    present = ink.any(0)
    depth = np.ones(width)
    if present.any():
        depth = ((top - top[present].min()) + (bottom[present].max() - bottom)) / max(h, 1)
        depth[~present] = 2.0
    cost = profile - depth
    cuts: list[int] = []
    for k in range(1, parts):
        nominal = k * width / parts
        reach = max(1, int(width / parts / 3))
        lo, hi = max(1, int(nominal) - reach), min(width - 1, int(nominal) + reach + 1)
        if hi <= lo:  # too narrow to cut here (a two-pixel dash): keep it whole
            return cuts, False
        window = cost[lo:hi]
        # Ties (several empty columns) go to the one nearest the nominal cut.
        candidates = np.nonzero(window <= window.min() + 1e-9)[0] + lo
        cuts.append(int(candidates[np.argmin(np.abs(candidates - nominal))]))
    # A cut is believable through a gap, a thin column, or a valley of the outline; a wide
    # 0 or a flat 2 has none of these where it would be cut, so it stays whole.
    good = all(profile[c] <= GOOD_CUT_INK or depth[c] >= GOOD_CUT_DEPTH for c in cuts)
    # Every part must be digit-sized: cutting off the flag of a 5 leaves a flat part.
    for c0, c1 in pairwise([0, *cuts, width]):
        rows = np.nonzero(ink[:, c0:c1].any(1))[0]
        if rows.size == 0 or rows[-1] + 1 - rows[0] < 0.5 * h:
            good = False
    return cuts, good


def segment_digits(image: Image.Image, fast: bool = True, *,
                   max_pieces: int = MAX_NUMBER_PIECES, max_digits: int = MAX_NUMBER_DIGITS,
                   deadline: float | None = None) -> list[DigitCrop]:
    """Every digit in a picture, left to right, each with its box in the original picture and
    its MNIST-form 28x28 array. Raises MnistlabError for a picture too small or without ink,
    and NumberLimitError for one with more than `max_pieces` pieces of ink or `max_digits`
    digits, or still being read at `deadline` (a time.monotonic() value).
    A clean picture (a drawing canvas) is analysed by the fast path, with the same result;
    `fast=False` takes the full path anyway (see preprocess.analyse)."""
    return segment_ink(analyse(image, fast), image.size, max_pieces=max_pieces,
                       max_digits=max_digits, deadline=deadline)


def segment_ink(ink: Ink, size: tuple[int, int], *, max_pieces: int = MAX_NUMBER_PIECES,
                max_digits: int = MAX_NUMBER_DIGITS,
                deadline: float | None = None) -> list[DigitCrop]:
    """`segment_digits` for a picture already analysed (`preprocess.analyse`), of `size`
    (width, height)."""
    p = ink.pieces
    pieces = int(np.count_nonzero(ink.keep))
    if pieces > max_pieces:  # grouping and framing cost grows with the pieces: refuse now
        raise NumberLimitError(f"too many separate pieces of ink to read as a number "
                               f"({pieces:,}; the limit is {max_pieces:,})")
    groups = group_pieces(ink)
    boxes = [(p.x0[g].min(), p.y0[g].min(), p.x1[g].max(), p.y1[g].max()) for g in groups]
    tallest = max(y1 - y0 for _, y0, _, y1 in boxes)
    kept = [(g, b) for g, b in zip(groups, boxes, strict=True)
            if not (b[3] - b[1] < SMALL * tallest and b[2] - b[0] < SMALL * tallest)]
    widths = np.array([b[2] - b[0] for _, b in kept])
    parts_of = [count_digits(b[2] - b[0], max(b[3] - b[1], 0.8 * tallest), widths)
                for _, b in kept]
    if sum(parts_of) > max_digits:
        raise NumberLimitError(f"too many digits to read as one number (about "
                               f"{sum(parts_of):,}; the limit is {max_digits:,})")
    crops: list[tuple[int, DigitCrop]] = []
    for (g, (x0, y0, x1, y1)), parts in zip(kept, parts_of, strict=True):
        if deadline is not None and time.monotonic() > deadline:
            raise NumberLimitError("reading the number took longer than allowed (too much "
                                   "ink in the picture)")
        w = x1 - x0
        member = np.zeros(len(p), bool)
        member[g] = True
        region = soft_ink(ink, member, (int(x0), int(y0), int(x1), int(y1)))
        cuts = [0, w]
        if parts > 1:
            inner, believable = split_candidates(region, parts)
            if believable:
                cuts = [0, *inner, w]
        for c0, c1 in pairwise(cuts):
            piece = region[:, c0:c1]  # frame() crops to the ink, so no full-size copy
            rows = np.nonzero(piece.max(1) > 0)[0]
            if rows.size == 0:
                continue
            top, bottom = y0 + rows[0], y0 + rows[-1] + 1
            box = original_box(ink, x0 + c0, top, x0 + c1, bottom, size)
            crops.append((x0 + c0, DigitCrop(box, frame(piece))))
    crops.sort(key=lambda item: item[0])
    return [crop for _, crop in crops]


def draw_boxes(image: Image.Image, boxes: list[tuple[int, int, int, int]],
               labels: list[str] | None = None) -> Image.Image:
    """An RGB copy of `image` with each box drawn (and its label above it), for people to
    check what was read where."""
    from PIL import ImageDraw, ImageFont

    out = image.convert("RGB")
    pen = ImageDraw.Draw(out)
    width = max(2, min(out.size) // 150)
    size = max(12, min(out.size) // 12)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed-size bitmap font
        font = ImageFont.load_default()
    for i, (x, y, w, h) in enumerate(boxes):
        pen.rectangle([x, y, x + w - 1, y + h - 1], outline=(230, 30, 30), width=width)
        if labels is not None:
            pen.text((x, max(0, y - size - width)), labels[i], fill=(230, 30, 30), font=font)
    return out
