"""The Reader: one run loaded once; every digit, single or part of a number, through the gate."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mnistlab.cli import main
from mnistlab.notadigit.gate import DigitGate
from mnistlab.predict.reader import Reader

pytestmark = [pytest.mark.real_data, pytest.mark.slow]


def on_paper(digits: list[np.ndarray], gap: int) -> Image.Image:
    """MNIST digits (white on black) as dark ink on white paper, side by side, 3x enlarged."""
    side = 84
    width = len(digits) * side + (len(digits) - 1) * gap + 80
    page = Image.new("L", (width, side + 80), 255)
    x = 40
    for d in digits:
        page.paste(Image.fromarray(255 - d).resize((side, side), Image.Resampling.BICUBIC),
                   (x, 40))
        x += side + gap
    return page


@pytest.fixture(scope="module")
def reader(real_default_run):
    return Reader.from_run(real_default_run)


@pytest.fixture(scope="module")
def sevens_and_twos(real_mnist):
    x, y = real_mnist.test_images.numpy(), real_mnist.test_labels.numpy()
    return x[np.nonzero(y == 7)[0][0]], x[np.nonzero(y == 2)[0][0]]


def test_a_number_is_read_digit_by_digit_through_the_gate(reader, sevens_and_twos):
    number = reader.read_number(on_paper(list(sevens_and_twos), gap=60))
    assert number.text == "72"
    assert number.is_number and number.reason is None
    assert all(p.is_digit for p in number.predictions)
    out = number.to_dict()
    assert out["is_number"] is True and [d["is_digit"] for d in out["digits"]] == [True, True]
    assert all(len(d["box"]) == 4 for d in out["digits"])


def test_a_digit_the_gate_refuses_makes_it_no_number(reader, sevens_and_twos):
    picture = on_paper(list(sevens_and_twos), gap=60)
    strict = Reader(reader.model, reader.normalizer, reader.state)
    strict.gate = DigitGate(score=reader.gate.score, threshold=1e9, calibrated=True)
    number = strict.read_number(picture)
    assert number.text == "72" and not number.is_number
    assert number.reason.startswith("not a digit: digit 1 (") and "digit 2" in number.reason
    assert [d["is_digit"] for d in number.to_dict()["digits"]] == [False, False]


def test_a_picture_without_digits_is_no_number(reader):
    empty = Reader(reader.model, reader.normalizer, reader.state)
    from mnistlab.predict.reader import NumberReading

    nothing = NumberReading([], [], empty.classes)
    assert not nothing.is_number and nothing.reason == "no digit found"


def test_too_many_digits_are_refused(reader, sevens_and_twos):
    from mnistlab.errors import MnistlabError

    with pytest.raises(MnistlabError, match="too many digits: 2 found, at most 1"):
        reader.read_number(on_paper(list(sevens_and_twos), gap=60), max_digits=1)


def test_single_digit_mode_suggests_number_mode(reader, sevens_and_twos):
    """Three digits side by side are not one digit: the reading says to read a number."""
    picture = on_paper([*sevens_and_twos, sevens_and_twos[0]], gap=20)
    assert reader.read_number(picture).is_number
    (reading,) = reader.read_many([picture])
    assert not reading.is_digit
    assert "reads as 3 digits side by side (727)" in reading.prediction.reason


def test_cli_number_json_carries_the_gate(real_default_run, sevens_and_twos, tmp_path, capsys):
    path = tmp_path / "72.png"
    on_paper(list(sevens_and_twos), gap=60).save(path)
    assert main(["predict", str(real_default_run), str(path), "--number", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (entry,) = out["predictions"]
    assert entry["text"] == "72" and entry["is_number"] is True
    assert [d["is_digit"] for d in entry["digits"]] == [True, True]
    assert out["digit_gate"]["calibrated"] is True


def test_cli_single_mode_hint(real_default_run, sevens_and_twos, tmp_path, capsys):
    path = tmp_path / "727.png"
    on_paper([*sevens_and_twos, sevens_and_twos[0]], gap=20).save(path)
    assert main(["predict", str(real_default_run), str(path)]) == 0
    assert "not a digit" in capsys.readouterr().out.split("\n")[0]
    assert main(["predict", str(real_default_run), str(path), "--explain"]) == 0
    assert "try --number" in capsys.readouterr().out


def test_one_digit_gets_no_hint(reader, sevens_and_twos):
    (reading,) = reader.read_many([on_paper([sevens_and_twos[0]], gap=0)])
    assert reading.is_digit and reading.prediction.label == 7
