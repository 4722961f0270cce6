"""The run directory: what a training run leaves behind, written atomically.

    runs/<name>/config.json    every resolved option, library versions, data set MD5s
    runs/<name>/metrics.csv    one row per logged step and one per epoch
    runs/<name>/best.pt        the weights with the best validation accuracy
    runs/<name>/last.pt        the latest state, for --resume
    runs/<name>/summary.json   final test metrics and timings
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from mnistlab import __version__
from mnistlab.atomic import write_json, write_text
from mnistlab.errors import MnistlabError

METRIC_COLUMNS = ["kind", "epoch", "step", "train_loss", "train_acc", "val_loss", "val_acc",
                  "test_loss", "test_acc", "lr", "images_per_s", "seconds"]


def environment() -> dict[str, Any]:
    import numpy
    import torch

    return {"mnistlab": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}


def new_run_name(model: str, dataset: str = "mnist") -> str:
    """`<model>-<date>-<time>`, with the data set after the model unless it is MNIST (the
    default stays implicit): `fast-20261124-140709`, `fast-fashion-mnist-20261124-140709`."""
    parts = [model] if dataset == "mnist" else [model, dataset]
    return "-".join([*parts, time.strftime("%Y%m%d-%H%M%S")])


class RunDir:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []

    @staticmethod
    def check_new(runs_dir: str, name: str) -> Path:
        """Refuse a run folder that is in use, before any work is done for the run."""
        path = Path(runs_dir) / name
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise MnistlabError(f"{path}: run directory exists and is not empty "
                                "(use --resume to continue it, or choose another --name)")
        return path

    @classmethod
    def create(cls, runs_dir: str, name: str) -> RunDir:
        path = cls.check_new(runs_dir, name)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise MnistlabError(f"{path}: cannot create the run directory "
                                f"({e.strerror or e})") from None
        run = cls(path)
        run.created = True
        return run

    created = False  # made by this process (so that a failed start may remove it)

    def discard(self) -> None:
        """Remove a run that failed before its first checkpoint: the files a run writes
        first, then the folder if nothing else is in it. Nothing else is touched."""
        if not self.created or self.file("last.pt").exists():
            return
        for name in ("config.json", "metrics.csv"):
            self.file(name).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # something else is in it: leave it
            self.path.rmdir()

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> RunDir:
        run = cls(path)
        if not run.path.is_dir():
            raise MnistlabError(f"{run.path}: no such run directory")
        if (run.path / "metrics.csv").is_file():
            run.rows = read_metrics(run.path / "metrics.csv")
        return run

    def file(self, name: str) -> Path:
        return self.path / name

    def write_config(self, config: dict[str, Any], extra: dict[str, Any]) -> None:
        write_json(self.file("config.json"), {**config, **extra, "environment": environment()})

    def log(self, row: dict[str, Any]) -> None:
        self.rows.append(row)

    def truncate_after(self, step: int) -> None:
        """On resume, forget rows logged after the checkpoint (they will be logged again)."""
        self.rows = [r for r in self.rows if int(r.get("step") or 0) <= step]

    def flush_metrics(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: _fmt(v) for k, v in row.items()})
        write_text(self.file("metrics.csv"), buf.getvalue())

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.file("summary.json"), summary)


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def read_json(path: Path) -> dict[str, Any]:
    """A run's JSON file as a dict; a one-line MnistlabError for anything else (the files
    are data from disk: damaged, edited by hand, or not ours)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MnistlabError(f"{path}: no such file") from None
    except OSError as e:
        raise MnistlabError(f"{path}: cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise MnistlabError(f"{path}: not text (invalid UTF-8)") from None
    except json.JSONDecodeError as e:
        raise MnistlabError(f"{path}: invalid JSON ({e.msg} at line {e.lineno})") from None
    except RecursionError:
        raise MnistlabError(f"{path}: invalid JSON (nested too deeply)") from None
    if not isinstance(value, dict):
        raise MnistlabError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """metrics.csv as dicts with numbers parsed (empty cells become None)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "kind" not in reader.fieldnames:
                raise MnistlabError(f"{path}: not an mnistlab metrics file (no 'kind' column)")
            rows = list(reader)
    except FileNotFoundError:
        raise MnistlabError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise MnistlabError(f"{path}: not text (invalid UTF-8)") from None
    except csv.Error as e:  # e.g. a NUL byte
        raise MnistlabError(f"{path}: not a readable CSV file ({e})") from None

    def parse(key: str, value: str | None) -> Any:
        if value is None or value == "":
            return None
        if key == "kind":
            return value
        try:
            number = float(value)
            return int(number) if key in ("epoch", "step") else number
        except (ValueError, OverflowError, TypeError):  # "x", inf or NaN as a count, a list
            raise MnistlabError(f"{path}: column '{key}' has a non-number "
                                f"'{' '.join(str(value).split())[:40]}'") from None

    return [{k: parse(k, v) for k, v in row.items()} for row in rows]
