"""Prediction: images drawn with PIL are brought into MNIST's form, then classified."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from mnistlab.checkpoint import load_model
from mnistlab.cli import main
from mnistlab.data.framing import centre_of_mass
from mnistlab.errors import MnistlabError
from mnistlab.predict import from_array, load_image, predict, prepare, to_mnist
from mnistlab.predict.segment import segment_digits


def draw(digit: str, size=(300, 200), box=(40, 40, 160, 260), width=18, background=255,
         ink=0, mode="L") -> Image.Image:
    """A thick '1' or '7' drawn with lines inside `box` (x0, y0, x1, y1)."""
    image = Image.new(mode, size, background)
    pen = ImageDraw.Draw(image)
    x0, y0, x1, y1 = box
    if digit == "1":
        xm = (x0 + x1) // 2
        pen.line([(xm - (x1 - x0) // 4, y0 + (y1 - y0) // 6), (xm, y0), (xm, y1)], fill=ink,
                 width=width)
    else:
        pen.line([(x0, y0), (x1, y0), (x0 + (x1 - x0) // 3, y1)], fill=ink, width=width)
    return image


def ink_box(array: np.ndarray) -> tuple[int, int]:
    rows, cols = np.nonzero(array)
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


def assert_mnist_form(array: np.ndarray) -> None:
    assert array.shape == (28, 28) and array.dtype == np.uint8
    assert abs(max(ink_box(array)) - 20) <= 1
    cy, cx = centre_of_mass(array.astype(np.float64))
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1
    # white on black: the background is 0 (as in MNIST, the ink may reach an edge of the
    # field, but not the corners), and the strongest ink is full white
    assert (array == 0).mean() > 0.5 and array[[0, 0, -1, -1], [0, -1, 0, -1]].max() == 0
    assert array.max() == 255


def photo_of_paper(seed: int = 0) -> Image.Image:
    """A dark '7' on grey, unevenly lit, noisy paper, as a phone photo gives."""
    rng = np.random.default_rng(seed)
    h, w = 240, 320
    light = 170 + 30 * np.linspace(0, 1, w)[None, :] + np.zeros((h, 1))  # brighter to the right
    paper = light + rng.normal(0, 4, (h, w))
    ink = np.asarray(draw("7", size=(w, h), box=(110, 50, 210, 200), width=14), dtype=np.float64)
    mask = ink < 128
    paper[mask] = 60 + rng.normal(0, 4, mask.sum())
    return Image.fromarray(np.clip(paper, 0, 255).astype(np.uint8), mode="L").convert("RGB")


CASES = {
    "thick 1, small, on white": lambda: draw("1", size=(60, 60), box=(20, 10, 35, 50), width=6),
    "7, large, off-centre": lambda: draw("7", size=(800, 600), box=(550, 330, 750, 560),
                                         width=40),
    "7, wide and short": lambda: draw("7", size=(400, 300), box=(50, 100, 350, 160), width=12),
    "1 on grey paper photo": lambda: draw("1", background=180, ink=50).convert("RGB"),
    "7 on unevenly lit noisy paper": photo_of_paper,
    "dark 7 on dimly lit paper": lambda: draw("7", background=90, ink=20),
    "white 7 on black": lambda: draw("7", background=0, ink=255),
    "light 1 on mid-grey": lambda: draw("1", background=120, ink=200),
    "white 1 on dark blue RGB": lambda: draw("1", background=(10, 20, 90), ink=(250, 250, 250),
                                             mode="RGB"),
    "black 7 on transparent RGBA": lambda: draw("7", background=(0, 0, 0, 0),
                                                ink=(0, 0, 0, 255), mode="RGBA"),
    "tiny 7 (enlarged)": lambda: draw("7", size=(20, 20), box=(4, 3, 14, 16), width=2),
}


@pytest.mark.parametrize("case", list(CASES))
def test_to_mnist_gives_mnist_form(case):
    assert_mnist_form(to_mnist(CASES[case]()))


def test_same_digit_anywhere_at_any_size_gives_nearly_the_same_image():
    small = to_mnist(draw("7", size=(300, 300), box=(20, 20, 120, 180), width=14)).astype(float)
    big = to_mnist(draw("7", size=(900, 900), box=(400, 300, 700, 780), width=42)).astype(float)
    assert np.abs(small - big).mean() < 10  # of 255: the same picture, up to resampling
    assert np.corrcoef(small.ravel(), big.ravel())[0, 1] > 0.95


def test_light_and_dark_backgrounds_give_the_same_image():
    dark_on_light = to_mnist(draw("7", background=255, ink=0))
    light_on_dark = to_mnist(draw("7", background=0, ink=255))
    np.testing.assert_array_equal(dark_on_light, light_on_dark)


def test_grey_paper_becomes_black():
    out = to_mnist(photo_of_paper(seed=1))
    # Nothing of the paper's texture survives: all ink is inside the drawn stroke's region.
    assert (out > 0).sum() < 0.5 * out.size
    assert out[:4].max() == 0  # the 7's top bar starts at row 4 in MNIST framing


def test_without_denoise_only_the_median_paper_level_is_removed():
    noisy = photo_of_paper(seed=2)
    assert (to_mnist(noisy, denoise=False) > 0).sum() > (to_mnist(noisy) > 0).sum()


def test_alpha_channel_is_composited_on_white():
    # RGB black everywhere: only the alpha channel tells ink from background.
    rgba = draw("1", background=(0, 0, 0, 0), ink=(0, 0, 0, 255), mode="RGBA")
    expected = to_mnist(draw("1", background=255, ink=0))
    np.testing.assert_array_equal(to_mnist(rgba), expected)


@pytest.mark.parametrize("image", [
    Image.new("L", (100, 100), 255), Image.new("L", (100, 100), 0),
    Image.new("RGB", (50, 80), (128, 128, 128)), Image.new("RGBA", (64, 64), (0, 0, 0, 0)),
], ids=["white", "black", "grey", "transparent"])
def test_blank_canvas_is_an_error(image):
    with pytest.raises(MnistlabError, match=r"^empty image: no ink found$"):
        to_mnist(image)


@pytest.mark.parametrize("size", [(1, 1), (7, 40), (300, 5)])
def test_tiny_picture_is_too_small_not_empty(size):
    with pytest.raises(MnistlabError, match=r"^image too small \(\d+x\d+ px; a digit needs "
                                            r"at least 8x8\)$"):
        to_mnist(Image.new("L", size, 0))


def gradient_paper_with_small_digit(seed: int = 0) -> Image.Image:
    """A 7 about 40 px tall in a 640x480 photo whose light falls from 240 to 110 across the
    sheet, with noise: one background level for the whole picture cannot separate it."""
    rng = np.random.default_rng(seed)
    h, w = 480, 640
    light = np.linspace(110, 240, w)[None, :] * np.linspace(0.9, 1.0, h)[:, None]
    page = light + rng.normal(0, 3, (h, w))
    mask = np.asarray(draw("7", size=(w, h), box=(420, 300, 445, 340), width=4)) < 128
    page[mask] *= 0.35  # dark ink: a third of the paper's brightness wherever it is
    return Image.fromarray(np.clip(page, 0, 255).astype(np.uint8), mode="L")


def test_small_digit_on_unevenly_lit_paper_fills_the_20px_box():
    image = gradient_paper_with_small_digit()
    prepared = prepare(image)
    assert_mnist_form(prepared.array)
    assert prepared.problems == []
    x, y, _, h = prepared.box  # found where it was drawn, in the picture's pixels
    assert abs(x - 418) <= 4 and abs(y - 298) <= 4 and abs(h - 44) <= 6


def ruled_paper_with_digit(line: int = 170) -> Image.Image:
    """A 7 written on ruled paper: the lines first, the ink over them."""
    digit = np.asarray(draw("7", size=(400, 300), box=(150, 80, 250, 230), width=14)) < 128
    paper = Image.new("L", (400, 300), 235)
    pen = ImageDraw.Draw(paper)
    for y in range(20, 300, 30):
        pen.line([(0, y), (400, y)], fill=line, width=2)
    page = np.asarray(paper).copy()
    page[digit] = 40
    return Image.fromarray(page, mode="L")


@pytest.mark.parametrize("line", [170, 60], ids=["light lines", "lines as dark as the ink"])
def test_ruled_lines_are_dropped_but_the_digit_is_kept(line):
    plain = prepare(draw("7", size=(400, 300), box=(150, 80, 250, 230), width=14,
                         background=235, ink=40))
    ruled = prepare(ruled_paper_with_digit(line))
    assert_mnist_form(ruled.array)
    assert ruled.problems == []
    # The same box (the lines crossing the 7 are cut off at its strokes) and the same picture
    # up to a few pixels (a line through the tip of the 7 may take its last rows).
    assert all(abs(a - b) <= 5 for a, b in zip(ruled.box, plain.box, strict=True))
    assert np.abs(ruled.array.astype(float) - plain.array).mean() < 12


def test_a_tap_is_not_a_digit_but_not_an_error():
    canvas = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(canvas).ellipse([130, 130, 146, 146], fill=0)
    prepared = prepare(canvas)
    assert prepared.array.shape == (28, 28)
    assert any(p.startswith("too little ink") for p in prepared.problems)
    assert prepare(draw("1")).problems == []  # a thick stroke is not a dot
    assert prepare(draw("7", width=40)).problems == []


def test_many_separate_pieces_are_not_a_digit():
    canvas = Image.new("L", (300, 300), 255)
    pen = ImageDraw.Draw(canvas)
    for i in range(4):
        for j in range(3):
            pen.line([(30 + 70 * i, 40 + 90 * j), (60 + 70 * i, 80 + 90 * j)], fill=0, width=8)
    assert any(p.startswith("too many separate pieces (12)")
               for p in prepare(canvas).problems)


def test_specks_beside_the_digit_are_left_out():
    clean = draw("7")
    specks = clean.copy()
    pen = ImageDraw.Draw(specks)
    for x, y in [(10, 10), (280, 20), (20, 180), (270, 170), (100, 15)]:
        pen.ellipse([x, y, x + 2, y + 2], fill=0)
    np.testing.assert_array_equal(to_mnist(specks), to_mnist(clean))


def test_load_image_reads_files_and_names_bad_ones(tmp_path):
    good = tmp_path / "seven.png"
    draw("7").save(good)
    assert load_image(good).size == (300, 200)
    text = tmp_path / "notes.png"
    text.write_text("not an image\n")
    empty = tmp_path / "empty.jpg"
    empty.touch()
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:200])
    for path, problem in [(text, "not an image"), (empty, "empty file"),
                          (truncated, "unreadable image"), (tmp_path / "gone.png", "no such file"),
                          (tmp_path, "is a folder")]:
        with pytest.raises(MnistlabError) as e:
            load_image(path)
        message = str(e.value)
        assert message.startswith(f"{path}: {problem}") and "\n" not in message


def test_from_array_accepts_mnist_sized_arrays_as_is():
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    np.testing.assert_array_equal(from_array(u8), u8)
    np.testing.assert_array_equal(from_array(u8 / 255.0), u8)  # floats in 0-1
    np.testing.assert_array_equal(from_array(u8.astype(np.float32)), u8)  # floats in 0-255
    np.testing.assert_array_equal(from_array(u8[None]), u8)  # (1, 28, 28)
    off_centre = np.zeros((28, 28), np.uint8)
    off_centre[:5, :5] = 255
    np.testing.assert_array_equal(from_array(off_centre), off_centre)  # no re-centering


@pytest.mark.parametrize("array, problem", [
    (np.zeros((32, 32)), "expected shape"), (np.full((28, 28), 300.0), "values must be in"),
    (np.full((28, 28), -1.0), "values must be in"), (np.full((28, 28), np.nan), "NaN"),
    (np.zeros((28, 28), bool), "expected numbers"),
])
def test_from_array_rejects_bad_arrays(array, problem):
    with pytest.raises(MnistlabError, match=problem):
        from_array(array)


# ---- predict ------------------------------------------------------------------------------

def test_predict_gives_probabilities_that_agree_with_the_logits(synthetic_run):
    model, normalizer, _ = load_model(synthetic_run)
    images = np.stack([to_mnist(draw(d, width=w)) for d in "17" for w in (10, 20)])
    predictions = predict(model, normalizer, images, "cpu", top_k=3)
    assert len(predictions) == 4
    for p in predictions:
        probs, logits = np.array(p.probabilities), np.array(p.logits)
        assert probs.shape == logits.shape == (10,)
        assert probs.sum() == pytest.approx(1.0, abs=1e-5)
        assert np.argmax(probs) == np.argmax(logits) == p.label == p.top[0][0]
        assert p.probability == pytest.approx(probs.max())
        assert [i for i, _ in p.top] == list(np.argsort(-probs)[:3])
        np.testing.assert_allclose(probs, torch.softmax(torch.tensor(logits), 0).numpy(),
                                   atol=1e-6)
    one = predict(model, normalizer, images[2:3], "cpu", top_k=1)[0]
    np.testing.assert_allclose(one.logits, predictions[2].logits, atol=1e-4)  # batch-independent
    assert predict(model, normalizer, images[:0], "cpu") == []


class FakeGate:
    """Accepts an image when its logit for class 0 is above a threshold."""

    threshold = 0.0

    def scores(self, logits):
        return logits[:, 0]

    def accepts(self, logits):
        return self.scores(logits) >= self.threshold


def test_predict_says_whether_it_is_a_digit(synthetic_run):
    model, normalizer, _ = load_model(synthetic_run)
    images = np.stack([to_mnist(draw(d, width=w)) for d in "17" for w in (10, 20)])
    plain = predict(model, normalizer, images, "cpu")
    assert all(p.is_digit is None and p.reason is None for p in plain)
    assert "is_digit" in plain[0].to_dict() and "reason" not in plain[0].to_dict()
    gate = FakeGate()
    gate.threshold = float(np.median([p.logits[0] for p in plain]))
    problems = [[], [], ["too little ink (a dot, not a drawn shape)"], []]
    gated = predict(model, normalizer, images, "cpu", gate=gate, problems=problems)
    for p, q, found in zip(plain, gated, problems, strict=True):
        assert (q.label, q.logits) == (p.label, p.logits)  # the answer itself is unchanged
        accepted = p.logits[0] >= gate.threshold
        assert q.is_digit == (accepted and not found)
        if found:
            assert q.reason == found[0]
        elif not accepted:
            assert q.reason.startswith("the model does not find it digit-like (score ")
        else:
            assert q.reason is None
    assert {q.is_digit for q in gated} == {True, False}
    only_problems = predict(model, normalizer, images, "cpu", problems=problems)
    assert [q.is_digit for q in only_problems] == [True, True, False, True]
    with pytest.raises(MnistlabError, match="3 problem lists for 4 images"):
        predict(model, normalizer, images, "cpu", problems=problems[:3])


def test_predict_rejects_wrong_input(synthetic_run):
    model, normalizer, _ = load_model(synthetic_run)
    with pytest.raises(MnistlabError, match="uint8 images"):
        predict(model, normalizer, np.zeros((2, 28, 28), np.float32), "cpu")
    with pytest.raises(MnistlabError, match="top-k"):
        predict(model, normalizer, np.zeros((2, 28, 28), np.uint8), "cpu", top_k=0)


# ---- the command --------------------------------------------------------------------------

@pytest.fixture
def image_dir(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    draw("1").save(folder / "one.png")
    draw("7", background=0, ink=255).save(folder / "seven.jpg")
    photo_of_paper().save(folder / "photo.jpg")
    return folder


def test_cli_predict_prints_top_k(synthetic_run, image_dir, capsys):
    assert main(["predict", str(synthetic_run), str(image_dir / "one.png"), "--top-k", "2",
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{image_dir / 'one.png'}: ") and "next:" in out


def test_cli_predict_explain_shows_logits_and_how_to_read_them(synthetic_run, image_dir, capsys):
    assert main(["predict", str(synthetic_run), str(image_dir), "--explain", "--top-k", "10"]) == 0
    out = capsys.readouterr().out
    assert "logit" in out and "probability" in out and "softmax" in out
    assert "largest logit is the most probable" in out
    model, normalizer, _ = load_model(synthetic_run)
    expected = predict(model, normalizer, to_mnist(load_image(image_dir / "one.png"))[None])[0]
    block = out.split(f"{image_dir / 'one.png'}:")[1].split("\n\n")[0].splitlines()[2:12]
    shown = {int(row.split()[0]): float(row.split()[1]) for row in block}
    assert shown == {i: pytest.approx(v, abs=1e-3) for i, v in enumerate(expected.logits)}


def test_cli_predict_json_and_save_preprocessed(synthetic_run, image_dir, tmp_path, capsys):
    seen = tmp_path / "seen"
    assert main(["predict", str(synthetic_run), str(image_dir), "--json",
                 "--save-preprocessed", str(seen)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [p["file"] for p in report["predictions"]] == [
        str(image_dir / n) for n in ("one.png", "photo.jpg", "seven.jpg")]
    assert report["errors"] == []
    for p in report["predictions"]:
        assert sum(p["probabilities"]) == pytest.approx(1.0, abs=1e-5)
        assert p["label"] == int(np.argmax(p["logits"])) and p["class"] == str(p["label"])
        assert len(p["top"]) == 3
    saved = sorted(seen.iterdir())
    assert [s.name for s in saved] == ["one.png", "photo.png", "seven.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(seen / "one.png")),
                                  to_mnist(load_image(image_dir / "one.png")))


def test_cli_predict_reports_bad_files_and_predicts_the_rest(synthetic_run, image_dir, capsys):
    (image_dir / "broken.png").write_text("this is text")
    Image.new("L", (50, 50), 255).save(image_dir / "blank.png")
    code = main(["predict", str(synthetic_run), str(image_dir), "--json"])
    captured = capsys.readouterr()
    assert code == 2
    errors = [line for line in captured.err.strip().splitlines()
              if not line.startswith("threads: ")]  # the thread count chosen, one line
    assert errors == [f"mnistlab: error: {image_dir / 'blank.png'}: empty image: no ink found",
                      f"mnistlab: error: {image_dir / 'broken.png'}: not an image "
                      "(no readable image format)"]
    assert len(json.loads(captured.out)["predictions"]) == 3


@pytest.mark.parametrize("argv, message", [
    (["{run}", "{missing}"], "no such file"),
    (["{run}", "{empty_dir}"], "no image files in"),
    (["{missing}", "{image}"], "no such file or directory"),
    (["{run}", "{image}", "--top-k", "0"], "--top-k must be at least 1"),
])
def test_cli_predict_errors_are_one_line(synthetic_run, image_dir, tmp_path, capsys, argv,
                                         message):
    (tmp_path / "empty").mkdir()
    names = {"run": synthetic_run, "missing": tmp_path / "nope.png",
             "empty_dir": tmp_path / "empty", "image": image_dir / "one.png"}
    code = main(["predict", *(a.format(**names) for a in argv)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("mnistlab: error: ") and message in err and err.count("\n") == 1


@pytest.mark.parametrize(("target", "message"), [
    ("{file}", "is a file, not a folder"),
    ("{file}/sub", "is inside {file}, which is a file, not a folder"),
    ("{file}/sub/deeper", "is inside {file}, which is a file, not a folder"),
])
def test_cli_predict_save_preprocessed_must_be_a_folder(image_dir, tmp_path, capsys, target,
                                                        message):
    """Refused before any work: the checkpoint named here does not even exist, and the
    error is about the option, not the checkpoint; nothing is written."""
    file = tmp_path / "taken.png"
    file.write_bytes(b"not touched")
    before = sorted(tmp_path.rglob("*"))
    code = main(["predict", str(tmp_path / "no-such-run"), str(image_dir / "one.png"),
                 "--save-preprocessed", target.format(file=file)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("mnistlab: error: --save-preprocessed ")
    assert message.format(file=file) in err
    assert sorted(tmp_path.rglob("*")) == before and file.read_bytes() == b"not touched"


def test_cli_predict_save_preprocessed_makes_a_new_folder(synthetic_run, image_dir, tmp_path,
                                                          capsys):
    out = tmp_path / "new" / "deeper"
    assert main(["predict", str(synthetic_run), str(image_dir / "one.png"),
                 "--save-preprocessed", str(out)]) == 0
    assert "of 1 picture to" in capsys.readouterr().out  # not "1 picture(s)"
    assert [p.name for p in out.iterdir()] == ["one.png"]


# ---- real MNIST: the preprocessing reproduces MNIST's own framing --------------------------

@pytest.mark.slow
@pytest.mark.real_data
def test_rerendered_mnist_digits_survive_preprocessing(real_mnist, real_default_run):
    """Render test digits as big black-on-white pictures at random places, bring them back
    with to_mnist: a model trained on MNIST must still read them (>= 95% of 200)."""
    model, normalizer, _ = load_model(real_default_run)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(real_mnist.test_labels), 200, replace=False)
    back = []
    for i in pick:
        digit = Image.fromarray(255 - real_mnist.test_images[i].numpy(), mode="L")
        side = int(rng.integers(120, 260))
        page = Image.new("L", (400, 320), 255)
        page.paste(digit.resize((side, side), Image.Resampling.BICUBIC),
                   (int(rng.integers(0, 400 - side)), int(rng.integers(0, 320 - side))))
        back.append(to_mnist(page))
    labels = real_mnist.test_labels[pick].numpy()
    predicted = np.array([p.label for p in predict(model, normalizer, np.stack(back))])
    original = np.array([p.label for p in predict(model, normalizer,
                                                  real_mnist.test_images[pick].numpy())])
    accuracy = (predicted == labels).mean()
    print(f"re-rendered: {accuracy:.1%}, original: {(original == labels).mean():.1%}")
    assert accuracy >= 0.95


# ---- the command: whole numbers, not a digit, --last -------------------------------------

def number_picture() -> Image.Image:
    """1 7 1 7 written with thick strokes on light grey paper, well apart."""
    image = Image.new("L", (520, 220), 230)
    pen = ImageDraw.Draw(image)
    for i, digit in enumerate("1717"):
        x = 40 + 120 * i
        if digit == "1":
            pen.line([(x + 20, 60), (x + 40, 40), (x + 40, 180)], fill=30, width=12)
        else:
            pen.line([(x, 40), (x + 70, 40), (x + 25, 180)], fill=30, width=12)
    return image


def test_cli_predict_number_text(synthetic_run, tmp_path, capsys):
    path = tmp_path / "number.png"
    number_picture().save(path)
    assert main(["predict", str(synthetic_run), str(path), "--number", "--device", "cpu"]) == 0
    line = capsys.readouterr().out.strip()
    # e.g. "number.png: 1717  (1 99.8%, 7 97.1%, 1 99.9%, 7 98.4%)": four digits read
    match = re.fullmatch(rf"{re.escape(str(path))}: (\d{{4}})  \((.*)\)", line)
    assert match, line
    parts = match.group(2).split(", ")
    assert len(parts) == 4 and all(re.fullmatch(r"\d \d+\.\d%", p) for p in parts)
    assert "".join(p[0] for p in parts) == match.group(1)


def test_cli_predict_number_json_and_boxes(synthetic_run, tmp_path, capsys):
    path = tmp_path / "number.png"
    number_picture().save(path)
    seen = tmp_path / "seen"
    assert main(["predict", str(synthetic_run), str(path), "--number", "--json",
                 "--save-preprocessed", str(seen)]) == 0
    report = json.loads(capsys.readouterr().out)
    (entry,) = report["predictions"]
    assert entry["file"] == str(path) and len(entry["digits"]) == 4
    assert entry["text"] == "".join(str(d["label"]) for d in entry["digits"])
    expected = [c.box for c in segment_digits(number_picture())]
    assert [tuple(d["box"]) for d in entry["digits"]] == expected
    ink = np.asarray(number_picture()) < 128
    for i, d in enumerate(entry["digits"]):  # each box is that digit's own ink, as drawn
        slot = np.zeros_like(ink)
        slot[:, 20 + 120 * i : 140 + 120 * i] = True
        ys, xs = np.nonzero(ink & slot)
        assert tuple(d["box"]) == (xs.min(), ys.min(), xs.max() + 1 - xs.min(),
                                   ys.max() + 1 - ys.min())
        assert 0 <= d["probability"] <= 1
    gate = report["digit_gate"]
    assert isinstance(gate["calibrated"], bool)
    assert gate["description"].startswith("not-a-digit gate: ")
    names = sorted(p.name for p in seen.iterdir())
    assert names == ["number-boxes.png", *[f"number-digit{i}.png" for i in range(1, 5)]]
    boxes = np.asarray(Image.open(seen / "number-boxes.png"))
    assert boxes.shape == (220, 520, 3)
    x, y, w, _ = expected[0]
    assert tuple(boxes[y, x + w // 2]) == (230, 30, 30)  # the box's top edge, drawn in red
    np.testing.assert_array_equal(np.asarray(Image.open(seen / "number-digit2.png")),
                                  segment_digits(number_picture())[1].array)


def test_cli_predict_says_not_a_digit_for_a_tap(synthetic_run, tmp_path, capsys):
    tap = tmp_path / "tap.png"
    canvas = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(canvas).ellipse([130, 130, 146, 146], fill=0)
    canvas.save(tap)
    assert main(["predict", str(synthetic_run), str(tap)]) == 0
    out = capsys.readouterr().out.strip()
    assert re.fullmatch(rf"{re.escape(str(tap))}: not a digit \(best guess \d, \d+\.\d%\)", out)
    assert main(["predict", str(synthetic_run), str(tap), "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)["predictions"]
    assert entry["is_digit"] is False and entry["reason"].startswith("too little ink")
    assert main(["predict", str(synthetic_run), str(tap), "--explain"]) == 0
    out = capsys.readouterr().out
    assert "why not a digit: too little ink" in out and "not-a-digit gate:" in out


def test_cli_predict_json_says_is_digit(synthetic_run, image_dir, capsys):
    assert main(["predict", str(synthetic_run), str(image_dir), "--json"]) == 0
    for entry in json.loads(capsys.readouterr().out)["predictions"]:
        assert isinstance(entry["is_digit"], bool)
        assert ("reason" in entry) == (not entry["is_digit"])


def test_cli_predict_needs_last_for_a_run_without_best(synthetic_run, image_dir, tmp_path,
                                                      capsys):
    run = tmp_path / "interrupted"
    run.mkdir()
    shutil.copy(synthetic_run / "last.pt", run / "last.pt")
    image = str(image_dir / "one.png")
    assert main(["predict", str(run), image]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no best.pt" in err and "--last" in err
    assert main(["predict", str(run), image, "--last"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{image}: ")
    assert captured.err.startswith("note: using ") and "last.pt" in captured.err
    # A complete run with --last uses its last.pt too, and says so.
    assert main(["predict", str(synthetic_run), image, "--last"]) == 0
    assert "last.pt" in capsys.readouterr().err


@pytest.mark.parametrize("option", [["--no-denoise"], ["--top-k", "2"], ["--explain"]])
def test_cli_predict_refuses_single_digit_options_with_number(synthetic_run, image_dir,
                                                              capsys, option):
    assert main(["predict", str(synthetic_run), str(image_dir / "one.png"), "--number",
                 *option]) == 2
    err = capsys.readouterr().err
    assert f"{option[0]} does not apply to --number" in err and err.count("\n") == 1


def test_cli_predict_number_reports_blank_pictures(synthetic_run, tmp_path, capsys):
    blank = tmp_path / "blank.png"
    Image.new("L", (200, 100), 255).save(blank)
    tiny = tmp_path / "tiny.png"
    Image.new("L", (1, 1), 0).save(tiny)
    assert main(["predict", str(synthetic_run), str(blank), str(tiny), "--number"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"mnistlab: error: {blank}: empty image: no ink found",
        f"mnistlab: error: {tiny}: image too small (1x1 px; a digit needs at least 8x8)"]


def test_16_bit_pictures_read_like_8_bit_ones():
    eight = draw("7", background=230, ink=30)
    sixteen = Image.fromarray(np.asarray(eight).astype(np.uint16) * 257)  # mode I;16
    assert sixteen.mode.startswith("I")
    np.testing.assert_array_equal(to_mnist(sixteen), to_mnist(eight))


def test_exif_orientation_is_applied_before_preprocessing(tmp_path):
    upright = draw("7", size=(300, 200))
    stored = upright.rotate(90, expand=True)  # the sensor's orientation
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif, quality=95)
    loaded = load_image(path)
    assert loaded.size == (300, 200)
    plain = tmp_path / "plain.jpg"
    upright.save(plain, quality=95)
    reference = to_mnist(load_image(plain)).astype(float)

    def distance(image):
        return np.abs(to_mnist(image).astype(float) - reference).mean()

    assert distance(loaded) < 0.4 * distance(stored)  # upright, unlike the stored pixels
