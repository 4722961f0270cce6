"""MNIST's framing of a digit, shared by everything that makes 28x28 images from drawings.

MNIST digits are white on black, their ink fitted into a 20x20 box keeping the aspect ratio
(antialiased), then pasted into a 28x28 field so that the centre of mass sits at pixel
(14, 14). A user's photo (mnistlab.predict.preprocess) and the generated not-a-digit images
(mnistlab.notadigit.negatives) are framed by these same functions, so that both look to the
network like the data it was trained on.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

SIZE = 28  # the MNIST field
BOX = 20  # the longer side of the ink's bounding box in MNIST
CENTRE = 14.0  # where MNIST puts the centre of mass (row, column)


def fit_box(ink: np.ndarray, box: int = BOX) -> np.ndarray:
    """Crop to the ink's bounding box and scale its longer side to `box` px (antialiased)."""
    rows, cols = np.nonzero(ink)
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = crop.shape
    scale = box / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # PIL wants (width, height)
    # LANCZOS on a float image averages over the whole footprint when shrinking (no aliasing
    # of thin strokes) and interpolates smoothly when enlarging a tiny drawing.
    resized = np.asarray(Image.fromarray(crop.astype(np.float32), mode="F")
                         .resize(size, Image.Resampling.LANCZOS), dtype=np.float32)
    resized = np.clip(resized, 0.0, None)
    top = float(resized.max())
    return resized / top if top > 0 else resized


def centre_of_mass(array: np.ndarray) -> tuple[float, float]:
    total = float(array.sum())
    rows = np.arange(array.shape[0], dtype=np.float64)
    cols = np.arange(array.shape[1], dtype=np.float64)
    return (float(array.sum(1) @ rows) / total, float(array.sum(0) @ cols) / total)


def paste_centred(digit: np.ndarray, size: int = SIZE, centre: float = CENTRE) -> np.ndarray:
    """Place `digit` in a size x size field, shifted by whole pixels so that its centre of
    mass lands on (centre, centre), as MNIST did; parts pushed over the edge are cut off."""
    cy, cx = centre_of_mass(digit)
    top, left = round(centre - cy), round(centre - cx)
    canvas = np.zeros((size, size), dtype=np.float32)
    h, w = digit.shape
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + h, size), min(left + w, size)
    canvas[r0:r1, c0:c1] = digit[r0 - top : r1 - top, c0 - left : c1 - left]
    return canvas


def to_uint8(array: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)


def frame(soft: np.ndarray) -> np.ndarray:
    """Soft ink (float, any size) -> uint8 (28, 28) in MNIST's framing."""
    return to_uint8(paste_centred(fit_box(soft)))
