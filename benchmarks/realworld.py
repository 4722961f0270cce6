"""Real-world reading: DEVELOPMENT and HELD-OUT figures side by side, over seeds, per family.

    mnistlab train --runs-dir runs --name default        # the default recipe (or any run)
    python benchmarks/realworld.py runs/default --seeds 0 1 2
    python benchmarks/realworld.py                       # trains the default run itself first
    python benchmarks/realworld.py RUN LOFO_RUN...       # + leave-one-family-out table
    python benchmarks/realworld.py --lofo                # trains one run per left-out kind
    python benchmarks/realworld.py RUN --small --pin     # writes benchmarks/heldout/pinned.json

The protocol (docs/evaluation.md): knobs are chosen on DEVELOPMENT data, final figures come
from HELD-OUT data nothing was tuned on.

- development: the photo-like pictures of benchmarks/devset.py (Liberation fonts; MNIST
  *validation* digits of each run's own split; letters, shapes, scribbles, taps), mnistlab's
  generated `variant="holdout"` non-digits (28x28), and MNIST validation as it is;
- held-out: benchmarks/heldout/ (README.md there): FreeFont letters (Latin, Greek, Cyrillic)
  and digits, UCI optdigits handwriting, Fashion-MNIST objects, spirals, outline rectangles,
  faces, arrows, check marks, hand-drawn symbols, textures, all through its own camera; and
  MNIST test as it is.

A run is read through the library's `mnistlab.predict.reader.Reader`, as `mnistlab predict`
and the server read it: the run's not-a-digit gate on every digit, single or part of a
number; a number counts as accepted when every digit passed.

Leave-one-family-out: a run whose config.json says it left training negative kinds out
(`not_a_digit` ... `exclude`, from `mnistlab train --negatives-exclude KIND`) gets a row per
kind: its rejection of that kind's development negatives and of the closest held-out
families, next to the same figures of a run trained on every kind.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import devset  # the development pictures (benchmarks/devset.py)
import heldout  # the held-out pictures (benchmarks/heldout/)
from benchmark_common import machine
from heldout import figures as fig
from heldout.figures import DEV, HELD, MNIST_28, NEGATIVES, Record

from mnistlab.atomic import write_json
from mnistlab.data.dataset import load_dataset
from mnistlab.data.split import split_indices, split_seed_of
from mnistlab.device import resolve_device
from mnistlab.errors import MnistlabError
from mnistlab.notadigit import negatives
from mnistlab.predict.reader import Reader

PINNED = Path(__file__).resolve().parent / "heldout" / "pinned.json"


# ---- the reader --------------------------------------------------------------------------------

class RunReader:
    """What the benchmark asks of a run, through the library's Reader (the one the CLI and
    the server use): every digit, single or part of a number, through the run's gate."""

    def __init__(self, run: Path, device: torch.device) -> None:
        self.reader = Reader.from_run(run, device, top_k=1)

    def read(self, image: Image.Image) -> tuple[int | None, bool]:
        """One digit: (label or None when nothing was found, is it a digit)."""
        try:
            reading = self.reader.read(image)
        except MnistlabError:  # no ink at all: nothing read, not a digit
            return None, False
        return reading.prediction.label, reading.is_digit

    def read_number(self, image: Image.Image) -> tuple[str, bool]:
        """A whole number: (the digits read, did every digit pass the gate)."""
        try:
            number = self.reader.read_number(image)
        except MnistlabError:
            return "", False
        return number.text, number.is_number

    def read_arrays(self, arrays: np.ndarray) -> list[tuple[int, bool]]:
        """Images already in MNIST form, uint8 (N, 28, 28): (label, is it a digit) each."""
        return [(p.label, bool(p.is_digit)) for p in self.reader.classify(arrays)]

    def describe(self) -> str:
        return self.reader.gate.describe()


def reader_for(run: Path, device: torch.device) -> RunReader:
    return RunReader(run, device)


# ---- reading pictures into records ---------------------------------------------------------------

def read_sample(reader: RunReader, split: str, family: str, group: str, condition: str,
                text: str, image: Image.Image, reads_as: str = "") -> Record:
    if group == "number":
        read, accepted = reader.read_number(image)
    else:
        label, accepted = reader.read(image)
        read = "" if label is None else str(label)
    return Record(split, family, group, condition, text, read, accepted, reads_as)


def heldout_records(readers: Sequence[RunReader], seed: int, sizes: heldout.Sizes,
                    sources: heldout.Sources, save: Path | None = None,
                    per_family_saved: int = 12) -> list[list[Record]]:
    """Every reader's records on the held-out pictures of `seed` (made once, read by all)."""
    out: list[list[Record]] = [[] for _ in readers]
    saved: dict[str, int] = {}
    for s in heldout.iter_samples(seed, sizes, sources):
        if save is not None and saved.get(s.family, 0) < per_family_saved:
            saved[s.family] = saved.get(s.family, 0) + 1
            name = f"heldout-s{seed}-{s.family}-{saved[s.family]:02d}-{s.condition}"
            s.image.save(save / f"{name}.jpg", quality=92)
        for records, reader in zip(out, readers, strict=True):
            records.append(read_sample(reader, HELD, s.family, s.group, s.condition, s.text,
                                       s.image, s.reads_as))
    return out


def dev_batches(seed: int, sizes: heldout.Sizes, val: tuple[np.ndarray, np.ndarray]
                ) -> Iterator[tuple[str, str, list[devset.Sample]]]:
    """The development pictures of `seed`, kind by kind: (family, group, pictures)."""
    x, y = val
    per_condition = max(1, sizes.printed // len(devset.CONDITIONS))
    yield "printed", "digit", devset.digit_samples("printed", per_condition, seed)
    yield "handwritten", "digit", devset.digit_samples("handwritten", per_condition, seed, x, y)
    numbers = sizes.number_printed
    yield "number-printed", "number", devset.number_samples("printed", numbers, seed)
    yield "number-handwritten", "number", devset.number_samples("handwritten", numbers, seed,
                                                                x, y)
    yield "non-digit", "non-digit", devset.non_digit_samples(sizes.per_non_digit_family, seed)


def dev_records(readers: Sequence[RunReader], seed: int, sizes: heldout.Sizes,
                val: tuple[np.ndarray, np.ndarray], save: Path | None = None
                ) -> list[list[Record]]:
    out: list[list[Record]] = [[] for _ in readers]
    for family, group, samples in dev_batches(seed, sizes, val):
        for i, s in enumerate(samples):
            fam = s.kind if group == "non-digit" else family
            if save is not None and i < 12:
                s.image.save(save / f"dev-s{seed}-{fam}-{i:02d}-{s.condition}.jpg", quality=92)
            for records, reader in zip(out, readers, strict=True):
                records.append(read_sample(reader, DEV, fam, group, s.condition, s.text,
                                           s.image))
    # mnistlab's generated held-out-variant non-digits, already 28x28
    images, kinds = negatives.generate(sizes.per_non_digit_family * 20, 1000 + seed, "holdout")
    for records, reader in zip(out, readers, strict=True):
        for (label, ok), k in zip(reader.read_arrays(images), kinds, strict=True):
            records.append(Record(DEV, f"{NEGATIVES}-{negatives.KINDS[int(k)]}", "non-digit",
                                  "28x28", "", str(label), ok))
    return out


def mnist_records(reader: RunReader, split: str, images: np.ndarray, labels: np.ndarray
                  ) -> list[Record]:
    return [Record(split, MNIST_28, "digit", "28x28", str(int(t)), str(label), ok)
            for (label, ok), t in zip(reader.read_arrays(images), labels, strict=True)]


def split_of(run: Path) -> tuple[int, int]:
    """(val_size, seed): what decides a run's validation split."""
    config = json.loads((Path(run) / "config.json").read_text())
    return int(config.get("val_size", 0)), split_seed_of(config)


def validation(mnist: Any, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A run's own validation split of MNIST (never trained on)."""
    if val_size <= 0:
        raise MnistlabError(f"a run trained without a validation split (val_size {val_size}) "
                            f"has no development digits to be measured on (use --no-dev)")
    _, val = split_indices(len(mnist.train_labels), val_size, seed)
    return mnist.train_images.numpy()[val], mnist.train_labels.numpy()[val]


# ---- whole evaluation ----------------------------------------------------------------------------

def evaluate(runs: Sequence[Path], seeds: Sequence[int], sizes: heldout.Sizes,
             device: torch.device, dev: bool = True, save: Path | None = None,
             log: Any = print, held: bool = True) -> list[dict[str, Any]]:
    """Per run: {"run", "gate", "excluded", "per_seed" (figures), "summary"}. `held=False`
    reads no held-out picture at all: what a choice between knobs may look at."""
    mnist = load_dataset("mnist", download=False)
    test = (mnist.test_images.numpy(), mnist.test_labels.numpy())
    sources = heldout.load_sources(test) if held else None
    readers = [reader_for(run, device) for run in runs]
    splits = [split_of(run) for run in runs] if dev else []
    vals = {key: validation(mnist, *key) for key in set(splits)}
    records: list[list[list[Record]]] = [[] for _ in runs]  # run -> seed -> records
    for seed in seeds:
        started = time.perf_counter()
        per_run = (heldout_records(readers, seed, sizes, sources, save) if sources is not None
                   else [[] for _ in runs])
        for key, val in vals.items():  # dev digits come from each run's own validation split
            same = [i for i, k in enumerate(splits) if k == key]
            dev_part = dev_records([readers[i] for i in same], seed, sizes, val, save)
            for i, part in zip(same, dev_part, strict=True):
                per_run[i] += part
        for i in range(len(runs)):
            records[i].append(per_run[i])
        log(f"seed {seed}: {len(per_run[0])} pictures read by {len(runs)} run(s) in "
            f"{time.perf_counter() - started:.0f} s", flush=True)
    results = []
    for i, (run, reader) in enumerate(zip(runs, readers, strict=True)):
        mnist_part = mnist_records(reader, HELD, *test) if held else []
        if dev:
            mnist_part += mnist_records(reader, DEV, *vals[splits[i]])
        per_seed = [fig.figures(seed_records + mnist_part) for seed_records in records[i]]
        results.append({"run": str(run), "gate": reader.describe(),
                        "excluded": fig.run_excludes(run), "seeds": list(seeds),
                        "per_seed": per_seed, "summary": fig.summarise(per_seed),
                        "misread_numbers": [(r.text, r.read) for r in records[i][0]
                                            if r.group == "number" and r.read != r.text][:8]})
    return results


def small_figures(run: Path, device: str = "cpu", seed: int = 0) -> dict[str, float]:
    """The pinned held-out figures (figures.PINNED, percent) of `run` on the small held-out set
    of `seed` (tests/test_heldout_figures.py)."""
    (result,) = evaluate([Path(run)], [seed], heldout.SMALL, resolve_device(device), dev=False,
                         log=lambda *a, **k: None)
    return pinned_figures(result)


def pinned_figures(result: dict[str, Any]) -> dict[str, float]:
    held = result["summary"][HELD]
    return {m: round(held[m]["mean"], 2) for m in fig.PINNED}


def write_pins(result: dict[str, Any]) -> None:
    info = machine()
    figures = pinned_figures(result)
    counts = {m: int(result["summary"][HELD][m]["n"]) for m in fig.PINNED}
    write_json(PINNED, {"run": Path(result["run"]).name, "set": "heldout.SMALL, seed 0",
                        "figures": figures, "pictures": counts,
                        "machine": info["cpu"], "torch": info["torch"],
                        "margin_points": 3.0,
                        "written_by": "python benchmarks/realworld.py RUN --small --pin"})
    print(f"pinned figures of {result['run']} written to {PINNED}:")
    for k, v in figures.items():
        print(f"  {k}: {v:.2f}%")


# ---- training runs it needs --------------------------------------------------------------------

def train_run(runs_dir: Path, name: str, extra: Sequence[str] = ()) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mnistlab", "train", "--threads", "1", "--runs-dir",
           str(runs_dir), "--name", name, *extra]
    print("training:", " ".join(cmd[2:]), flush=True)
    return subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))


def default_run(workdir: Path) -> Path:
    done = train_run(workdir, "default")
    if done.returncode != 0:
        raise SystemExit(f"training the default run failed:\n{done.stderr.strip()}")
    return workdir / "default"


def lofo_runs(workdir: Path) -> list[Path]:
    """One run per training negative kind left out (`--negatives-exclude KIND`); none, with a
    clear message, when this mnistlab does not have the option."""
    runs = []
    for kind in negatives.KINDS:
        done = train_run(workdir, f"lofo-{kind}", ["--negatives-exclude", kind])
        if done.returncode != 0:
            err = done.stderr.strip().splitlines()
            print(f"leave-one-family-out: `mnistlab train --negatives-exclude {kind}` was "
                  f"refused ({err[-1] if err else 'exit status ' + str(done.returncode)}); "
                  f"this mnistlab cannot leave a training family out, so there is no "
                  f"leave-one-family-out table", flush=True)
            return []
        runs.append(workdir / f"lofo-{kind}")
    return runs


# ---- printing -----------------------------------------------------------------------------------

def held_tables(summary: dict[str, Any], camera: str) -> list[str]:
    """The held-out family and condition tables; none when no held-out picture was read."""
    if not summary[HELD]:
        return []
    return ["Held-out, per family:", "", fig.family_table(summary, HELD), "",
            f"Held-out, per condition of its camera{camera}:", "",
            fig.condition_table(summary, HELD), ""]


def report(results: Sequence[dict[str, Any]]) -> str:
    parts = []
    for r in results:
        parts += [f"### {r['run']}", "", r["gate"] + (f"; left out of training: "
                                                      f"{', '.join(r['excluded'])}"
                                                      if r["excluded"] else ""), "",
                  f"seeds {', '.join(map(str, r['seeds']))}: mean (lowest) over seeds; n = "
                  f"pictures per seed", "", fig.side_by_side(r["summary"]), "",
                  *held_tables(r["summary"], " (benchmarks/heldout/camera.py)"),
                  "Development, per family:", "", fig.family_table(r["summary"], DEV), "",
                  "Development, per condition:", "", fig.condition_table(r["summary"], DEV), "",
                  f"some numbers misread (true, read): {r['misread_numbers']}", ""]
    plain = [r for r in results if not r["excluded"]]
    if len(plain) > 1:  # the figures to quote: every run trained on all kinds, pooled
        pooled = fig.summarise([f for r in plain for f in r["per_seed"]])
        names = ", ".join(Path(r["run"]).name for r in plain)
        parts[:0] = [f"### {len(plain)} runs pooled ({names})", "",
                     "mean (lowest) over runs and seeds; n = pictures per run and seed", "",
                     fig.side_by_side(pooled), "", *held_tables(pooled, ""),
                     *([] if pooled[HELD] else ["Development, per family:", "",
                                                fig.family_table(pooled, DEV), ""])]
    rows = fig.lofo_rows(results)
    if rows:
        parts += ["### Leave one family out", "",
                  "Each row: a run trained without one negative kind; in brackets, a run "
                  "trained with all of them.", "", fig.lofo_table(rows), ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="*", type=Path, help="run directories (default: train one)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--small", action="store_true",
                        help=f"the small sets ({heldout.sets.count(heldout.SMALL)} held-out "
                             f"pictures a seed) instead of the full ones "
                             f"({heldout.sets.count(heldout.FULL)})")
    parser.add_argument("--no-dev", action="store_true", help="held-out figures only")
    parser.add_argument("--dev-only", action="store_true",
                        help="development figures only, no held-out picture read: for "
                             "choosing between runs (docs/evaluation.md)")
    parser.add_argument("--lofo", action="store_true",
                        help="also train one run per training negative kind left out")
    parser.add_argument("--pin", action="store_true",
                        help=f"with --small and seeds starting at 0: also write the first "
                             f"run's held-out figures of seed 0 to "
                             f"{PINNED.relative_to(PINNED.parents[2])}, for the pinning test")
    parser.add_argument("--combine", type=Path, nargs="+", default=None, metavar="JSON",
                        help="print one report from the --json files of earlier invocations "
                             "(e.g. one seed each, run in parallel), seeds pooled")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--save-samples", type=Path, default=None,
                        help="write the first pictures of every family into this folder")
    args = parser.parse_args(argv)
    if args.dev_only and (args.no_dev or args.pin):
        print("error: --dev-only reads no held-out picture, so it cannot go with --no-dev or "
              "--pin", file=sys.stderr)
        return 2
    if args.pin and (not args.small or args.seeds[0] != 0 or args.combine):
        print("error: --pin needs --small and a first seed of 0 (the pinned set is the small "
              "one, seed 0), and no --combine", file=sys.stderr)
        return 2

    started = time.perf_counter()
    if args.combine:
        try:
            loaded = [r for path in args.combine for r in json.loads(path.read_text())["results"]]
        except (OSError, ValueError, KeyError) as e:
            print(f"error: --combine: cannot read the results: {e}", file=sys.stderr)
            return 2
        print(report(fig.combine(loaded)))
        return 0
    device = resolve_device(args.device)
    try:
        fonts = heldout.fonts.describe()
    except heldout.MissingFontError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.save_samples:
        args.save_samples.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        runs = list(args.runs) or [default_run(Path(tmp))]
        if args.lofo:
            runs += lofo_runs(Path(tmp))
        sizes = heldout.SMALL if args.small else heldout.FULL
        held = ("not read (--dev-only)" if args.dev_only else
                f"{heldout.sets.count(sizes)} pictures a seed, fonts: {fonts}")
        print(f"held-out: {held}; "
              f"development: benchmarks/devset.py ({devset.fonts_used()}) and "
              f"mnistlab's generated holdout non-digits; seeds {args.seeds}", flush=True)
        try:
            results = evaluate(runs, args.seeds, sizes, device, dev=not args.no_dev,
                               save=args.save_samples, held=not args.dev_only)
        except (MnistlabError, OSError, ValueError) as e:  # a bad run folder, missing data
            print(f"error: {e}", file=sys.stderr)
            return 2
        if args.pin:  # from the first seed (0) alone
            first = {**results[0], "per_seed": results[0]["per_seed"][:1]}
            write_pins({**first, "summary": fig.summarise(first["per_seed"])})
    print()
    print(report(results))
    info = machine()
    print(f"{info['cpu']}, {info['cores']} cores, load average at start "
          f"{info['load_average_at_start']}, torch {info['torch']}, "
          f"{time.perf_counter() - started:.0f} s in all")
    if args.json:
        write_json(args.json, {"machine": info, "args": {k: str(v) for k, v in
                                                          vars(args).items()},
                               "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

