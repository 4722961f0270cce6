"""Bring any digit image into MNIST's form, the way the data set itself was made.

MNIST digits are white on black, their ink fitted into a 20x20 box keeping the aspect ratio
(antialiased), then pasted into a 28x28 field so that the centre of mass sits at pixel (14, 14)
(measured on the test set: mean 13.99, 14.01). A network trained on MNIST has only ever seen
that, so a photo of a digit on paper must be brought to the same form before it is classified:

    grayscale (transparent pixels composited on white)
    -> invert when the ink is darker than the background (the border pixels)
    -> subtract the background level, so grey paper becomes 0 (optional, on by default)
    -> crop to the ink -> longer side to 20 px -> centre by centre of mass in 28x28.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mnistlab.errors import MnistlabError

SIZE = 28  # the MNIST field
BOX = 20  # the longer side of the ink's bounding box in MNIST
CENTRE = 14.0  # where MNIST puts the centre of mass (row, column)
MIN_CONTRAST = 0.05  # ink must stand out from the background by 5% of the full range


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
        with Image.open(path) as image:
            image.load()  # decode now: a truncated file fails here, not later
            # A copy outlives the file; phone photos are turned upright by their EXIF tag.
            return ImageOps.exif_transpose(image.copy()) or image.copy()
    except UnidentifiedImageError:
        raise MnistlabError(f"{path}: not an image (no readable image format)") from None
    except Image.DecompressionBombError as e:
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


def border(array: np.ndarray) -> np.ndarray:
    """The outermost ring of pixels, about 2% of the size deep: where the background is."""
    h, w = array.shape
    d = max(1, min(h, w) // 50)
    return np.concatenate([array[:d].ravel(), array[-d:].ravel(),
                           array[d:-d, :d].ravel(), array[d:-d, -d:].ravel()])


def ink_on_black(gray: np.ndarray, denoise: bool = True) -> np.ndarray:
    """White ink on a black background, scaled so the strongest ink is 1."""
    # The ink is what lies farthest from the background level (the border's median): if
    # the darkest pixels are farther from it than the brightest, it is dark ink on paper,
    # however dimly the paper is lit.
    level = float(np.median(border(gray)))
    darkest, brightest = np.percentile(gray, [0.1, 99.9])
    if level - darkest > brightest - level:
        gray = 1.0 - gray
    ring = border(gray)
    background = float(np.median(ring))
    if denoise:
        # Paper is not uniformly lit: everything up to a robust upper bound of the border's
        # spread (median + 3 * 1.4826 * MAD, which is 3 sigma for Gaussian noise) is paper.
        spread = 1.4826 * float(np.median(np.abs(ring - background)))
        background = background + 3.0 * spread
    ink = np.clip(gray - background, 0.0, None)
    top = float(ink.max())
    if top < MIN_CONTRAST:
        raise MnistlabError("empty image: no ink found")
    return ink / top


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


def to_mnist(image: Image.Image, denoise: bool = True) -> np.ndarray:
    """Any digit image -> uint8 (28, 28), white digit on black, framed as in MNIST.

    `denoise=False` keeps faint background texture (only the median border level is removed).
    Raises MnistlabError("empty image: no ink found") for a blank or uniform image.
    """
    gray = grayscale(image)
    if gray.size == 0:
        raise MnistlabError("empty image: no ink found")
    ink = ink_on_black(gray, denoise)
    return to_uint8(paste_centred(fit_box(ink)))


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
