"""Paper around the digit: a sheet photographed lying on a table, and notebook paper with a
coloured margin line and faint rules, photographed a little askew.

The pictures here are built independently of benchmarks/devset.py (the development
generator the preprocessing was tuned on): other table textures, another digit (drawn
strokes), other sizes and slants."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnistlab.errors import MnistlabError
from mnistlab.predict.preprocess import analyse, find_sheet, grayscale, prepare
from mnistlab.predict.segment import segment_digits

W, H = 360, 300
SEVEN = [(0.0, 0.0), (1.0, 0.0), (0.35, 1.0)]  # a 7 as a polyline in its unit box
DIGIT_BOX = (150, 90, 215, 200)  # x0, y0, x1, y1 of the 7 in the picture


def jpeg(page: np.ndarray, rng: np.random.Generator, sigma: float = 2.5) -> Image.Image:
    noisy = page + rng.normal(0, sigma, (*page.shape[:2], 1))
    image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), mode="RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=88)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def table(rng: np.random.Generator, colour: tuple[int, int, int]) -> np.ndarray:
    """A wooden-looking table top: stripes along a slant, with some blotches."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    grain = 9 * np.sin((xx * 0.3 + yy) / 3.0) + 5 * np.sin((xx - yy * 0.2) / 11.0)
    grain += rng.normal(0, 4, (H, W))
    return np.clip(np.array(colour, np.float32) + grain[..., None], 0, 255)


def draw_seven(pen: ImageDraw.ImageDraw, width: int = 9) -> None:
    x0, y0, x1, y1 = DIGIT_BOX
    points = [(x0 + u * (x1 - x0), y0 + v * (y1 - y0)) for u, v in SEVEN]
    pen.line(points, fill=(35, 35, 45), width=width, joint="curve")


def sheet_on_table(digit: bool = True, margin: bool = False,
                   colour: tuple[int, int, int] = (125, 85, 50), seed: int = 0) -> Image.Image:
    """A white sheet, turned by 6 degrees, covering about 70% of the frame, on a table."""
    rng = np.random.default_rng(seed)
    picture = Image.fromarray(table(rng, colour).astype(np.uint8), mode="RGB")
    pen = ImageDraw.Draw(picture)
    angle = np.deg2rad(6)
    cx, cy, hw, hh = W / 2 + 8, H / 2, 0.43 * W, 0.42 * H
    corners = [(cx + dx * np.cos(angle) - dy * np.sin(angle),
                cy + dx * np.sin(angle) + dy * np.cos(angle))
               for dx, dy in ((-hw, -hh), (hw, -hh), (hw, hh), (-hw, hh))]
    pen.polygon(corners, fill=(232, 230, 224))
    if margin:
        pen.line([(118, 0), (104, H)], fill=(220, 70, 80), width=2)
    if digit:
        draw_seven(pen)
    return jpeg(np.asarray(picture, np.float32), rng)


def notebook(slant_deg: float = 3.0, digit: bool = True, seed: int = 1) -> Image.Image:
    """Notebook paper filling the frame: faint blue rules and a red margin line, askew."""
    rng = np.random.default_rng(seed)
    page = np.ones((H, W, 3), np.float32) * np.array([238, 236, 230], np.float32)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    slope = np.tan(np.deg2rad(slant_deg))
    page[((yy - slope * xx) % 27) < 1.5] = (200, 212, 232)
    page[np.abs(xx + slope * yy - 120) < 1.2] = (225, 80, 95)  # the margin line
    picture = Image.fromarray(page.astype(np.uint8), mode="RGB")
    if digit:
        draw_seven(ImageDraw.Draw(picture))
    return jpeg(np.asarray(picture, np.float32), rng)


def assert_box_is_the_sevens(image: Image.Image) -> None:
    x, y, w, h = prepare(image).box
    x0, y0, x1, y1 = DIGIT_BOX
    slack = 8  # the pen's width and the JPEG's blur
    assert abs(x - x0) <= slack and abs(y - y0) <= slack, (x, y, w, h)
    assert abs(x + w - x1) <= slack and abs(y + h - y1) <= slack, (x, y, w, h)


@pytest.mark.parametrize("colour", [(125, 85, 50), (60, 85, 130), (95, 95, 100)])
def test_a_digit_on_a_sheet_lying_on_a_table_is_framed_alone(colour):
    image = sheet_on_table(colour=colour)
    assert find_sheet(image, grayscale(image)) is not None
    assert_box_is_the_sevens(image)
    assert not prepare(image).problems
    assert len(segment_digits(image)) == 1


def test_the_sheets_edge_is_not_ink():
    """A blank sheet on a table: the table and the sheet's straight edges are no ink; at most
    a speck of noise is left, which is no digit."""
    image = sheet_on_table(digit=False)
    try:
        ink = analyse(image)
    except MnistlabError as e:
        assert "no ink" in str(e)
        return
    assert ink.pieces.area[ink.keep].sum() < 20
    assert prepare(image).problems


def test_the_digit_on_the_table_reads_as_on_plain_paper():
    on_table = prepare(sheet_on_table()).array.astype(np.float32)
    paper = Image.new("RGB", (W, H), (232, 230, 224))
    draw_seven(ImageDraw.Draw(paper))
    plain = prepare(jpeg(np.asarray(paper, np.float32), np.random.default_rng(0))).array
    plain = plain.astype(np.float32)
    # The same 7, give or take a pixel of centring (the JPEG and the noise differ).
    correlation = max(np.corrcoef(np.roll(on_table, (dy, dx), (0, 1)).ravel(),
                                  plain.ravel())[0, 1]
                      for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    assert correlation > 0.9


def test_a_picture_of_the_table_only_is_read_without_a_crash():
    rng = np.random.default_rng(3)
    image = jpeg(table(rng, (120, 80, 45)), rng)
    assert find_sheet(image, grayscale(image)) is None
    try:
        prepared = prepare(image)
    except MnistlabError:
        return  # "no ink found" is a sane answer too
    assert prepared.array.shape == (28, 28)


@pytest.mark.parametrize("slant", [-4.0, -2.5, 2.5, 4.0])
def test_an_askew_margin_line_and_rules_are_paper_not_ink(slant):
    image = notebook(slant)
    assert find_sheet(image, grayscale(image)) is None  # paper to the frame's edge
    assert_box_is_the_sevens(image)
    assert not prepare(image).problems
    assert len(segment_digits(image)) == 1
    ink = analyse(image)
    # Nothing but specks (stubs of rules beside it) left of the margin line (x = 120 - slope
    # * y), away from the 7.
    left = ink.keep & (ink.pieces.x0 < DIGIT_BOX[0] - 10)
    assert not left.any(), ink.pieces.area[left]


def test_a_digit_on_a_sheet_with_a_margin_line_lying_on_a_table():
    image = sheet_on_table(margin=True, colour=(70, 100, 75), seed=5)
    assert find_sheet(image, grayscale(image)) is not None
    assert_box_is_the_sevens(image)
    assert len(segment_digits(image)) == 1


def test_a_long_thin_slanted_stroke_is_kept():
    """A 1 drawn with a thin pen, slanted and long, is a stroke: it does not run across the
    picture, so it is not taken for an askew paper line."""
    page = Image.new("RGB", (W, H), (236, 235, 230))
    ImageDraw.Draw(page).line([(185, 40), (170, 250)], fill=(30, 30, 40), width=3)
    image = jpeg(np.asarray(page, np.float32), np.random.default_rng(2))
    h = prepare(image).box[3]
    assert h >= 200  # the whole stroke, not cut


def test_shadows_and_light_gradients_are_no_table():
    """A soft shadow's edge or a light gradient splits the picture into a bright and a dark
    part as a table does, but changes slowly: no sheet is found, nothing is painted over."""
    xx = np.mgrid[0:H, 0:W][1].astype(np.float32)
    rng = np.random.default_rng(4)
    for light in (0.45 + 0.55 * xx / W,  # a gradient
                  1 - 0.5 / (1 + np.exp(-(xx - 0.6 * W) / 12.0))):  # a soft shadow
        paper = Image.new("RGB", (W, H), (235, 234, 228))
        draw_seven(ImageDraw.Draw(paper))
        image = jpeg(np.asarray(paper, np.float32) * light[..., None], rng)
        assert find_sheet(image, grayscale(image)) is None
        assert_box_is_the_sevens(image)


@pytest.mark.slow
@pytest.mark.real_data
def test_default_run_reads_digits_on_tables_and_notebook_paper(real_mnist, real_default_run):
    """The default run reads the development generator's desk and margin digits."""
    from benchmarks import devset

    from mnistlab.predict.reader import Reader

    reader = Reader.from_run(real_default_run)
    samples = devset.digit_samples("printed", 6, seed=11, conditions=("desk", "margin"))
    readings = reader.read_many([s.image for s in samples])
    right = sum(r.is_digit and str(r.prediction.label) == s.text
                for r, s in zip(readings, samples, strict=True))
    assert right >= 10, f"{right}/{len(samples)}"
