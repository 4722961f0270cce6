"""The held-out set's fonts: GNU FreeFont (Debian fonts-freefont-ttf), no other family.

Training draws its letters and printed digits from DejaVu, the development pictures from
Liberation; the held-out set uses neither. A missing font is an error that names the package
to install, never a silent substitution: a held-out figure measured with other fonts would not
be the same figure.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fontTools.ttLib import TTFont
from PIL import ImageFont

PACKAGE = "fonts-freefont-ttf"
FONT_DIRS = ("/usr/share/fonts/truetype/freefont", "/usr/share/fonts/freefont",
             "/usr/share/fonts/TTF", "/usr/local/share/fonts", "/Library/Fonts")
FONT_FILES = ("FreeSans.ttf", "FreeSansBold.ttf", "FreeSansOblique.ttf",
              "FreeSansBoldOblique.ttf", "FreeSerif.ttf", "FreeSerifBold.ttf",
              "FreeSerifItalic.ttf", "FreeSerifBoldItalic.ttf", "FreeMono.ttf",
              "FreeMonoBold.ttf", "FreeMonoOblique.ttf", "FreeMonoBoldOblique.ttf")
# Families that training (DejaVu) and the development pictures (Liberation) use: never here.
FORBIDDEN = ("dejavu", "liberation")


class MissingFontError(RuntimeError):
    """A held-out font is not installed."""


@cache
def font_paths() -> tuple[Path, ...]:
    """Every held-out font file, in FONT_FILES order; MissingFontError if any is missing."""
    found, missing = [], []
    for name in FONT_FILES:
        path = next((Path(d) / name for d in FONT_DIRS if (Path(d) / name).is_file()), None)
        if path is None:
            missing.append(name)
        else:
            found.append(path)
    if missing:
        raise MissingFontError(
            f"held-out fonts missing: {', '.join(missing)} (looked in {', '.join(FONT_DIRS)}); "
            f"install them with `apt-get install {PACKAGE}` (listed in .ci/apt-packages): the "
            f"held-out set never substitutes another font")
    assert not any(bad in p.name.lower() for p in found for bad in FORBIDDEN)
    return tuple(found)


@cache
def _charset(path: Path) -> frozenset[int]:
    with TTFont(str(path), lazy=True) as font:
        return frozenset(font.getBestCmap())


def fonts_with(chars: str) -> tuple[Path, ...]:
    """The held-out fonts that have a real glyph for every one of `chars` (no .notdef box)."""
    return tuple(p for p in font_paths() if all(ord(c) in _charset(p) for c in chars))


@cache
def truetype(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


def describe() -> str:
    return f"{len(font_paths())} GNU FreeFont files ({', '.join(p.stem for p in font_paths())})"
