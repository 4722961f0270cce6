"""Prediction: images drawn with PIL are brought into MNIST's form, then classified."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from mnistlab.checkpoint import load_model
from mnistlab.cli import main
from mnistlab.errors import MnistlabError
from mnistlab.predict import from_array, load_image, predict, to_mnist
from mnistlab.predict.preprocess import centre_of_mass


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
    Image.new("L", (1, 1), 0),
], ids=["white", "black", "grey", "transparent", "one pixel"])
def test_blank_canvas_is_an_error(image):
    with pytest.raises(MnistlabError, match=r"^empty image: no ink found$"):
        to_mnist(image)


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
    errors = captured.err.strip().splitlines()
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
