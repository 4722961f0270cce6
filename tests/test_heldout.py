"""The held-out picture set (benchmarks/heldout): seeded, complete, and its bookkeeping right.

No real data needed: optdigits is bundled with scikit-learn; MNIST and Fashion-MNIST are
stood in for by made-up images here (tests/test_heldout_figures.py uses the real ones).
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from benchmarks import heldout
from benchmarks.heldout import camera, fonts, ink
from benchmarks.heldout import figures as fig
from benchmarks.heldout.figures import DEV, HELD, Record

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TINY = heldout.Sizes(optdigits=3, printed=2, mnist_test_photo=2, number_optdigits=2,
                     number_printed=2, per_non_digit_family=2)


@pytest.fixture(scope="module")
def sources() -> heldout.Sources:
    blobs = np.zeros((20, 28, 28), np.uint8)
    for i in range(20):
        blobs[i, 6:22, 8 + i % 6 : 14 + i % 6] = 200  # a bar, standing in for a digit or a coat
    labels = np.arange(20) % 10
    return heldout.Sources(heldout.load_optdigits(), (blobs, labels), (blobs, labels))


def pixels(s: heldout.Sample) -> np.ndarray:
    return np.asarray(s.image)


def test_same_seed_same_pictures_other_seed_other_pictures(sources):
    families = ("optdigits", "face", "latin", "number-printed", "fashion")
    a = heldout.build(3, TINY, sources, families)
    b = heldout.build(3, TINY, sources, families)
    c = heldout.build(4, TINY, sources, families)
    assert [s.detail for s in a] == [s.detail for s in b]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(pixels(x), pixels(y))
    assert sum(not np.array_equal(pixels(x), pixels(z)) if x.image.size == z.image.size
               else True for x, z in zip(a, c, strict=True)) == len(a)


def test_every_family_is_there_with_its_count(sources):
    samples = heldout.build(0, TINY, sources)
    counts = {f: sum(s.family == f for s in samples) for f in heldout.FAMILIES}
    assert counts == {f: TINY.of(f, 1797) for f in heldout.FAMILIES}
    assert heldout.sets.count(TINY) == len(samples)
    for s in samples:
        assert s.image.mode == "RGB" and s.condition in heldout.CONDITIONS
        gray = pixels(s).mean(2)
        assert gray.min() < 0.8 * np.median(gray), (s.family, s.condition)  # visible ink
        if s.group == "non-digit":
            assert s.text == ""
        else:
            assert s.text.isdigit() and (len(s.text) == 1) == (s.group == "digit")
    # a family's pictures do not depend on the other families' sizes
    alone = heldout.build(0, TINY, sources, ["spiral"])
    together = [s for s in samples if s.family == "spiral"]
    for x, y in zip(alone, together, strict=True):
        np.testing.assert_array_equal(pixels(x), pixels(y))


def test_the_full_and_small_sets_have_the_promised_sizes():
    assert heldout.FULL.of("optdigits", 1797) == 1797  # every optdigits scan
    assert heldout.sets.count(heldout.FULL) > 3000
    assert 300 <= heldout.sets.count(heldout.SMALL) <= 700
    assert len(heldout.load_optdigits()[1]) == 1797


def test_optdigits_are_the_real_scans_in_order(sources):
    every = heldout.iter_samples(0, heldout.Sizes(optdigits=None), sources, ["optdigits"])
    samples = list(itertools.islice(every, 12))  # made one at a time: only these 12
    assert heldout.Sizes(optdigits=None).of("optdigits", 1797) == 1797
    _, labels = sources.optdigits
    assert [s.text for s in samples] == [str(int(v)) for v in labels[:12]]
    assert samples[7].detail == "optdigits #7"


def test_every_condition_is_used_by_every_family():
    for family in heldout.FAMILIES:
        seen = {heldout.sets.condition_of(family, i) for i in range(len(heldout.CONDITIONS))}
        assert seen == set(heldout.CONDITIONS)
    with pytest.raises(ValueError, match="unknown condition"):
        camera.photograph(np.ones((10, 10), np.float32), np.random.default_rng(0), "fog")
    with pytest.raises(ValueError, match="unknown families"):
        heldout.build(0, TINY, None, ["latin", "klingon"])


def test_letters_use_only_held_out_fonts_with_real_glyphs():
    paths = fonts.font_paths()
    assert len(paths) == 12 and all(p.name.startswith("Free") for p in paths)
    for family, alphabet in heldout.sets.ALPHABETS.items():
        assert set(heldout.READS_AS[family]) <= set(alphabet)
        for char in alphabet:
            assert fonts.fonts_with(char), (family, char)  # never a .notdef box
    mask, name = ink.glyph("Ж", np.random.default_rng(0))
    assert mask.max() > 0.9 and name.startswith("Free")


def test_a_missing_font_is_an_error_naming_the_package(monkeypatch):
    monkeypatch.setattr(fonts, "FONT_DIRS", ("/no/such/folder",))
    fonts.font_paths.cache_clear()
    try:
        with pytest.raises(fonts.MissingFontError, match="apt-get install fonts-freefont-ttf"):
            fonts.font_paths()
    finally:
        monkeypatch.undo()
        fonts.font_paths.cache_clear()
    assert fonts.font_paths()


def test_the_pen_with_mass_is_not_a_ruler():
    rng = np.random.default_rng(0)
    square = [np.array([[-1, -1], [1, -1], [1, 1], [-1, 1], [-1, -1]], float)]
    neat, drawn = ink.ruler(square, 6), ink.hand(square, rng, 6)
    assert neat.shape == drawn.shape
    assert (neat > 0.5).sum() > 0 and (drawn > 0.5).sum() > 0
    assert np.abs(neat - drawn).mean() > 0.01  # it wobbles, overshoots, varies its width
    trace = ink.pen_trace(square[0], np.random.default_rng(1), wobble=10)
    assert len(trace) > 20 and np.abs(trace).max() < 1.6  # follows the square, roughly


# ---- figures and tables ---------------------------------------------------------------------

def rec(split, family, group, text, read, accepted, reads_as="", condition="even"):
    return Record(split, family, group, condition, text, read, accepted, reads_as)


def test_figures_count_what_they_say():
    records = [
        rec(HELD, "latin", "non-digit", "", "4", True),
        rec(HELD, "latin", "non-digit", "", "7", False),
        rec(HELD, "latin", "non-digit", "", "0", True, reads_as="0"),  # O: left out
        rec(HELD, "optdigits", "digit", "3", "3", True),
        rec(HELD, "optdigits", "digit", "5", "6", True),
        rec(HELD, "number-optdigits", "number", "12", "12", False),
        rec(DEV, "letter", "non-digit", "", "1", False),
        rec(DEV, "negatives-holdout-bars", "non-digit", "", "1", False, condition="28x28"),
    ]
    f = fig.figures(records)
    assert f[HELD]["non-digits rejected"] == (1, 2)
    assert f[HELD]["rejected: latin"] == (1, 2)
    assert f[HELD]["reads as a digit, read as it: latin"] == (1, 1)
    assert f[HELD]["digit photos accepted"] == (2, 2)
    assert f[HELD]["handwritten digits, not MNIST (optdigits), read right"] == (1, 2)
    assert f[HELD]["handwritten numbers read exactly"] == (1, 1)
    assert f[HELD]["handwritten numbers read exactly, every digit accepted"] == (0, 1)
    assert f[DEV]["non-digits rejected"] == (1, 1)
    assert f[DEV]["rejected: negatives-holdout-bars"] == (1, 1)
    assert f[DEV]["generated non-digits (28x28, variant holdout) rejected"] == (1, 1)
    assert "handwritten digits, not MNIST (optdigits), read right" not in f[DEV]
    assert f[HELD]["accepted @ even"] == (2, 2) and f[HELD]["rejected @ even"] == (1, 2)


def test_summary_gives_mean_and_lowest_over_seeds_and_the_tables_show_them():
    seeds = [{HELD: {"non-digits rejected": (9, 10)}, DEV: {"non-digits rejected": (5, 10)}},
             {HELD: {"non-digits rejected": (7, 10)}, DEV: {"non-digits rejected": (6, 10)}}]
    s = fig.summarise(seeds)
    assert s[HELD]["non-digits rejected"] == {"mean": 80.0, "min": 70.0, "n": 10.0, "seeds": 2}
    table = fig.side_by_side(s)
    assert "| non-digits rejected | 55.0% (min 50.0%) | 10 | 80.0% (min 70.0%) | 10 |" in table
    assert "digit photos accepted" not in table  # measured on neither side: no row


@pytest.mark.parametrize("config, kinds", [
    ({"not_a_digit": {"negatives": {"exclude": ["shape"]}}}, ["shape"]),
    ({"not_a_digit": {"negatives": {"exclude": "shape,letter"}}}, ["letter", "shape"]),
    ({"not_a_digit": {"exclude_kinds": ["dots"]}}, ["dots"]),
    ({"negatives_exclude": "bars"}, ["bars"]),
    ({"not_a_digit": {"kinds": {"letter": 0.3}}}, []),
    ({}, []),
])
def test_left_out_kinds_are_read_from_config_json(config, kinds):
    assert fig.excluded_kinds(config) == kinds


def test_lofo_table_from_fake_runs(tmp_path):
    for name, config in (("base", {"not_a_digit": {"negatives": {}}}),
                         ("no-shape", {"not_a_digit": {"negatives": {"exclude": ["shape"]}}})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(config))
    assert fig.run_excludes(tmp_path / "no-shape") == ["shape"]
    assert fig.run_excludes(tmp_path / "base") == []
    assert fig.run_excludes(tmp_path / "missing") == []

    def result(run, dev, held):
        per_seed = [{DEV: {"rejected: negatives-holdout-shape": dev},
                     HELD: {f"rejected: {f}": held for f in fig.CLOSEST["shape"]}}]
        return {"run": str(tmp_path / run), "excluded": fig.run_excludes(tmp_path / run),
                "summary": fig.summarise(per_seed)}

    rows = fig.lofo_rows([result("base", (9, 10), (8, 10)), result("no-shape", (3, 10),
                                                                     (2, 10))])
    assert len(rows) == 1 and rows[0]["kind"] == "shape"
    assert rows[0]["baseline_run"] == str(tmp_path / "base")
    table = fig.lofo_table(rows)
    assert "| shape | 30.0% (90.0%) | outline-rect 20.0% (80.0%), spiral 20.0% (80.0%)" in table
    assert fig.lofo_rows([result("base", (9, 10), (8, 10))]) == []  # nothing left out


# ---- realworld.py around the figures ------------------------------------------------------------

def load_realworld():
    spec = importlib.util.spec_from_file_location("realworld_benchmark",
                                                  BENCHMARKS / "realworld.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_lofo_says_so_when_training_refuses_the_option(monkeypatch, tmp_path, capsys):
    realworld = load_realworld()
    calls = []

    def refuse(runs_dir, name, extra=()):
        calls.append(list(extra))
        return subprocess.CompletedProcess([], 2, "", "mnistlab train: error: unrecognized "
                                                      "arguments: --negatives-exclude shape")

    monkeypatch.setattr(realworld, "train_run", refuse)
    assert realworld.lofo_runs(tmp_path) == []
    assert calls == [["--negatives-exclude", "letter"]]  # stops at the first refusal
    out = capsys.readouterr().out
    assert "was refused" in out and "no leave-one-family-out table" in out
    assert "unrecognized arguments" in out


def test_combine_pools_the_seeds_of_several_json_files(tmp_path, capsys):
    realworld = load_realworld()
    paths = []
    for seed, hits in ((0, 9), (1, 7)):
        path = tmp_path / f"s{seed}.json"
        path.write_text(json.dumps({"results": [{
            "run": "runs/default", "gate": "gate", "excluded": [], "seeds": [seed],
            "misread_numbers": [],
            "per_seed": [{HELD: {"non-digits rejected": [hits, 10]}, DEV: {}}]}]}))
        paths.append(str(path))
    assert realworld.main(["--combine", *paths]) == 0
    out = capsys.readouterr().out
    assert "seeds 0, 1" in out and "80.0% (min 70.0%)" in out
    assert realworld.main(["--combine", str(tmp_path / "nope.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_pin_refuses_anything_but_the_small_set_from_seed_0(capsys):
    realworld = load_realworld()
    for argv in (["--pin"], ["--pin", "--small", "--seeds", "1", "0"],
                 ["--pin", "--small", "--combine", "x.json"]):
        assert realworld.main(argv) == 2
        assert "--pin needs --small and a first seed of 0" in capsys.readouterr().err
