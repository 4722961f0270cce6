"""`mnistlab train` as a new user meets it: bad options are one line before any work, and
the final line times the whole command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mnistlab.cli import main

TESTS = Path(__file__).parent


@pytest.mark.parametrize("options, message", [
    (["--schedule", "step", "--step-size", "0"], "--step-size must be at least 1, got 0"),
    (["--schedule", "step", "--gamma", "-1"], "--gamma must be positive, got -1.0"),
    (["--batch-size", "100000", "--dry-run"], "--batch-size 100000 is larger than the training "
                                              "split (500 images after --val-size 100)"),
])
def test_bad_training_options_are_one_line_and_leave_no_run(synth, tmp_path, capsys, options,
                                                            message):
    code = main(["train", *synth, "--name", "bad", *options])
    err = capsys.readouterr().err
    assert code != 0
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "runs" / "bad").exists()


def test_a_used_name_is_refused_before_the_data_is_read(synth, tmp_path, capsys):
    (tmp_path / "runs" / "taken").mkdir(parents=True)
    (tmp_path / "runs" / "taken" / "config.json").write_text("{}")
    missing = ["--data-dir", str(tmp_path / "nowhere"), "--no-download"]
    code = main(["train", *synth, *missing, "--name", "taken", "--doctor"])
    err = capsys.readouterr().err
    assert code != 0 and "taken: run directory exists and is not empty" in err


DRIVER = f"""
import sys
from pathlib import Path
sys.path.insert(0, {str(TESTS)!r})
from conftest import synthetic_spec
from mnistlab.data.registry import DATASETS
DATASETS["synth"] = synthetic_spec(Path(sys.argv[1]))
from mnistlab.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_piped_output_reports_the_whole_command(synth, tmp_path):
    folder = synth[synth.index("--data-dir") + 1]
    done = subprocess.run([sys.executable, "-c", DRIVER, folder, "train", *synth, "--name",
                           "piped", "--epochs", "1"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    final = done.stdout.strip().splitlines()[-1]
    assert "s in all (the whole command" in final, final
    assert "before training: Python and imports" in final
    assert "\r" not in done.stdout  # not a terminal: no status line drawn in place
    summary = json.loads((tmp_path / "runs" / "piped" / "summary.json").read_text())
    startup = summary["startup_seconds"]
    assert summary["command_seconds"] > summary["wall_seconds"] > 0
    assert summary["command_seconds"] > startup["before_trainer"] > 0
    assert summary["threads"]["source"] == "forced"
