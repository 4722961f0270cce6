"""Reading whole numbers: connected pieces, merged into digits, split when touching, in order."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnistlab.errors import MnistlabError
from mnistlab.predict.preprocess import analyse, label
from mnistlab.predict.segment import count_digits, draw_boxes, segment_digits, split_points


def bfs_count(mask: np.ndarray) -> int:
    """8-connected components counted the slow, obvious way (the reference)."""
    seen = np.zeros_like(mask, bool)
    h, w = mask.shape
    count = 0
    for i in range(h):
        for j in range(w):
            if mask[i, j] and not seen[i, j]:
                count += 1
                stack = [(i, j)]
                seen[i, j] = True
                while stack:
                    y, x = stack.pop()
                    for yy in range(max(0, y - 1), min(h, y + 2)):
                        for xx in range(max(0, x - 1), min(w, x + 2)):
                            if mask[yy, xx] and not seen[yy, xx]:
                                seen[yy, xx] = True
                                stack.append((yy, xx))
    return count


def test_label_matches_a_flood_fill_on_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(60):
        mask = rng.random((int(rng.integers(1, 25)), int(rng.integers(1, 25)))) < rng.uniform(
            0.1, 0.6)
        comps = label(mask)
        assert len(comps) == bfs_count(mask)
        assert comps.area.sum() == mask.sum()
        assert ((comps.labels > 0) == mask).all()
        for k in range(len(comps)):  # boxes hold their component exactly
            ys, xs = np.nonzero(comps.labels == k + 1)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (
                comps.x0[k], comps.y0[k], comps.x1[k], comps.y1[k])


def test_label_joins_diagonal_neighbours_and_a_spiral():
    diagonal = np.eye(6, dtype=bool)
    assert len(label(diagonal)) == 1
    spiral = np.zeros((9, 9), bool)  # one long winding path: many rounds of propagation
    spiral[0, :], spiral[:, 8], spiral[8, :], spiral[2:, 0] = True, True, True, True
    spiral[2, :7], spiral[2:7, 6], spiral[6, 2:7], spiral[4:7, 2] = True, True, True, True
    assert len(label(spiral)) == 1
    assert len(label(np.zeros((3, 3), bool))) == 0


def strokes(size, lines, width=10, background=255, ink=0) -> Image.Image:
    image = Image.new("L", size, background)
    pen = ImageDraw.Draw(image)
    for points in lines:
        pen.line(points, fill=ink, width=width)
    return image


def one(x, y=40, h=100):
    return [[(x, y), (x, y + h)]]


def seven(x, y=40, h=100, w=50):
    return [[(x, y), (x + w, y), (x + 10, y + h)]]


def test_digits_come_left_to_right_with_boxes_in_the_original_picture():
    image = strokes((420, 200), one(300) + seven(60) + one(180))
    crops = segment_digits(image)
    assert len(crops) == 3
    xs = [c.box[0] for c in crops]
    assert xs == sorted(xs)
    # Boxes in the original's pixels: the 7's own ink, as drawn.
    ys, xs = np.nonzero(np.asarray(image)[:, :150] < 128)
    x, y, w, h = crops[0].box
    assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    for c in crops:
        assert c.array.shape == (28, 28) and c.array.dtype == np.uint8
        rows, cols = np.nonzero(c.array)
        assert max(np.ptp(rows), np.ptp(cols)) + 1 in (19, 20, 21, 22)


def test_boxes_are_in_original_pixels_for_large_photos_too():
    small = strokes((420, 200), seven(60) + one(180))
    big = small.resize((2100, 1000), Image.Resampling.NEAREST)  # analysed at 1024 px wide
    boxes_small = [c.box for c in segment_digits(small)]
    boxes_big = [c.box for c in segment_digits(big)]
    for bs, bb in zip(boxes_small, boxes_big, strict=True):
        assert all(abs(b / 5 - s) <= 3 for s, b in zip(bs, bb, strict=True))


def test_pieces_of_one_digit_are_merged():
    # A 5 written in two strokes that do not touch: the flag above, the body below.
    five = [[(70, 40), (30, 40)], [(30, 52), (30, 85), (60, 80), (75, 100), (65, 130),
                                    (30, 135)]]
    # A 7 with a separate crossbar through its stem.
    crossed = [[(150, 40), (200, 40), (165, 140)], [(160, 95), (195, 95)]]
    broken_seven = [[(250, 40), (300, 40)], [(300, 50), (262, 140)]]
    crops = segment_digits(strokes((360, 180), five + crossed + broken_seven, width=8))
    assert len(crops) == 3


def test_touching_digits_are_split_at_the_thinnest_column():
    # Two wide zeros that touch, alone: one piece, 1.55 times as wide as tall.
    image = Image.new("L", (300, 200), 255)
    pen = ImageDraw.Draw(image)
    pen.ellipse([40, 40, 120, 140], outline=0, width=10)
    pen.ellipse([115, 40, 195, 140], outline=0, width=10)
    crops = segment_digits(image)
    assert len(crops) == 2
    left, right = crops
    assert left.box[0] < right.box[0]
    assert abs(left.box[0] + left.box[2] - 117) <= 8  # cut where the rings touch


def test_touching_narrow_digits_are_split_when_other_digits_show_the_width():
    # 1, then two narrow zeros that touch (together only 1.1 times as wide as tall), then 1.
    image = strokes((420, 200), one(40, y=40, h=120) + one(360, y=40, h=120))
    pen = ImageDraw.Draw(image)
    pen.ellipse([120, 40, 190, 160], outline=0, width=10)
    pen.ellipse([185, 40, 255, 160], outline=0, width=10)
    crops = segment_digits(image)
    assert len(crops) == 4
    assert [c.box[0] for c in crops] == sorted(c.box[0] for c in crops)


def test_a_wide_digit_among_narrow_ones_is_not_split():
    wide_two = [[(120, 60), (150, 40), (190, 60), (130, 140), (230, 140)]]  # 110 x 100
    image = strokes((420, 200), one(40) + wide_two + one(330))
    assert len(segment_digits(image)) == 3


def test_a_full_stop_is_not_a_digit_but_a_short_digit_stays():
    image = strokes((400, 200), one(60) + one(200))
    ImageDraw.Draw(image).ellipse([120, 130, 132, 142], fill=0)  # a full stop
    assert len(segment_digits(image)) == 2


def test_split_points_prefer_empty_columns_and_outline_valleys():
    region = np.ones((10, 12))
    region[:, 8] = 0  # an empty column
    region[3:7, 4] = 0  # a nearly empty one (but its outline is not lower)
    assert split_points(region, 2) == [8]
    assert split_points(np.pad(np.ones((4, 2)), ((0, 0), (0, 1))).repeat(1, 0)[:, [0, 1, 2, 0, 1]]
                        , 2) == [2]
    valley = np.ones((10, 9))
    valley[:4, 4] = 0  # a dip in the top outline at column 4
    valley[7:, 4] = 0
    assert split_points(valley, 2) == [4]


def test_blank_and_tiny_pictures_are_errors():
    with pytest.raises(MnistlabError, match="no ink found"):
        segment_digits(Image.new("L", (200, 100), 255))
    with pytest.raises(MnistlabError, match="too small"):
        segment_digits(Image.new("L", (3, 3), 0))


def test_draw_boxes_marks_each_box_in_red():
    image = strokes((200, 120), one(60, y=20, h=80))
    out = draw_boxes(image, [(40, 10, 50, 100)], ["1"])
    pixels = np.asarray(out)
    assert out.mode == "RGB" and out.size == image.size
    assert tuple(pixels[10, 60]) == (230, 30, 30)  # top edge of the box
    assert tuple(pixels[60, 40]) == (230, 30, 30)  # left edge
    assert tuple(pixels[60, 120]) == (255, 255, 255)  # outside: untouched


def test_a_five_with_a_long_flag_is_not_cut_into_a_digit_and_a_bar():
    # The flag runs far to the right: the piece is as wide as two digits, but cutting it
    # would leave a flat part, which is no digit.
    five = [[(270, 40), (130, 40), (130, 85), (160, 80), (175, 100), (165, 130), (130, 140)]]
    image = strokes((460, 200), one(50) + five + one(310) + one(380))
    ink = analyse(image)
    widths = ink.pieces.x1 - ink.pieces.x0
    assert count_digits(int(widths.max()), 110, np.sort(widths)[:-1]) == 2  # wide enough
    crops = segment_digits(image)
    assert len(crops) == 4
