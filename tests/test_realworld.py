"""benchmarks/realworld.py end to end, tiny: development and held-out pictures read by a run,
the side-by-side, per-family and per-condition tables printed (tests/test_heldout.py has the
bookkeeping; tests/test_heldout_figures.py the pinned figures of the default run)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "realworld.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("realworld_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.real_data
def test_realworld_benchmark_runs_tiny(real_mnist, synthetic_run, tmp_path):
    benchmark = load_benchmark()
    heldout = benchmark.heldout
    tiny = heldout.Sizes(optdigits=2, printed=2, mnist_test_photo=1, number_optdigits=1,
                         number_printed=1, per_non_digit_family=1)
    lines = []
    results = benchmark.evaluate([synthetic_run], [0, 1], tiny, torch.device("cpu"),
                                 save=tmp_path, log=lambda *a, **k: lines.append(a[0]))
    assert len(lines) == 2 and "seed 1" in lines[1]
    (result,) = results
    assert result["run"] == str(synthetic_run) and result["seeds"] == [0, 1]
    assert result["excluded"] == [] and "gate" in result["gate"]
    held, dev = result["summary"]["held-out"], result["summary"]["development"]
    # one picture a family, less any letter that reads as a digit
    assert len(heldout.NON_DIGIT_FAMILIES) - 3 <= held["non-digits rejected"]["n"] <= len(
        heldout.NON_DIGIT_FAMILIES)
    assert held["MNIST digits as they are (28x28) accepted"]["n"] == len(real_mnist.test_labels)
    assert dev["MNIST digits as they are (28x28) accepted"]["n"] == 100  # its val_size
    assert held["handwritten numbers read exactly"]["n"] == 1
    assert dev["generated non-digits (28x28, variant holdout) rejected"]["n"] == 20
    for family in heldout.FAMILIES:
        assert any(m.endswith(f": {family}") for m in held), family
    saved = {p.name.split("-")[0] for p in tmp_path.iterdir()}
    assert saved == {"heldout", "dev"}
    text = benchmark.report(results)
    assert "| measure | development | n | held-out | n |" in text
    assert "| fashion |" in text and "| optdigits |" in text and "| far |" in text
    assert "Leave one family out" not in text  # no run left a family out


def test_missing_held_out_fonts_stop_the_benchmark(monkeypatch, capsys):
    benchmark = load_benchmark()
    fonts = benchmark.heldout.fonts
    monkeypatch.setattr(fonts, "FONT_DIRS", ("/no/such/folder",))
    fonts.font_paths.cache_clear()
    try:
        assert benchmark.main(["/no/run"]) == 2
    finally:
        monkeypatch.undo()
        fonts.font_paths.cache_clear()
    assert "fonts-freefont-ttf" in capsys.readouterr().err


@pytest.mark.real_data
def test_a_folder_that_is_no_run_is_a_one_line_error(real_mnist, tmp_path, capsys):
    benchmark = load_benchmark()
    assert benchmark.main([str(tmp_path / "no-run"), "--small", "--seeds", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_several_plain_runs_are_pooled_first_and_lofo_runs_are_not():
    benchmark = load_benchmark()
    fig = benchmark.fig

    def result(run: str, rejected: int, excluded: list[str]) -> dict:
        per_seed = [{fig.DEV: {"non-digits rejected": (200, 240)},
                     fig.HELD: {"non-digits rejected": (rejected, 600)}}]
        return {"run": f"/runs/{run}", "gate": "gate", "excluded": excluded, "seeds": [0],
                "per_seed": per_seed, "summary": fig.summarise(per_seed),
                "misread_numbers": []}

    text = benchmark.report([result("a", 300, []), result("b", 420, []),
                             result("lofo-dots", 60, ["dots"])])
    first = text.split("\n\n")[0]
    assert first == "### 2 runs pooled (a, b)"  # the left-out run is not pooled
    # mean of 50% and 70%, lowest 50%
    assert "| non-digits rejected | 83.3% (min 83.3%) | 240 | 60.0% (min 50.0%) | 600 |" in text
    assert text.count("### ") == 5  # pooled, a, b, lofo-dots, the leave-one-out table
    single = benchmark.report([result("a", 300, [])])
    assert "pooled" not in single


@pytest.mark.real_data
def test_dev_only_reads_no_held_out_picture(real_mnist, synthetic_run, monkeypatch):
    benchmark = load_benchmark()
    heldout = benchmark.heldout

    def no_held_out(*args, **kwargs):
        raise AssertionError("a held-out picture was made in a development-only evaluation")

    monkeypatch.setattr(heldout, "load_sources", no_held_out)
    monkeypatch.setattr(heldout, "iter_samples", no_held_out)
    tiny = heldout.Sizes(optdigits=2, printed=2, mnist_test_photo=1, number_optdigits=1,
                         number_printed=1, per_non_digit_family=1)
    (result,) = benchmark.evaluate([synthetic_run], [0], tiny, torch.device("cpu"),
                                   log=lambda *a, **k: None, held=False)
    assert result["summary"]["held-out"] == {}
    assert result["summary"]["development"]["non-digits rejected"]["n"] > 0
    text = benchmark.report([result, result])
    assert "Held-out, per" not in text and "Development, per family:" in text
    assert "| non-digits rejected |" in text


def test_dev_only_refuses_the_options_that_need_held_out_pictures(capsys):
    benchmark = load_benchmark()
    for extra in (["--no-dev"], ["--pin", "--small", "--seeds", "0"]):
        assert benchmark.main(["/no/run", "--dev-only", *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --dev-only") and "\n" not in err.strip()
