"""How well a run reads digits from photo-like pictures: before and after the local preprocessing.

    mnistlab train --runs-dir runs --name default        # the default recipe (or any run)
    python benchmarks/realworld.py runs/default          # one or more run directories
    python benchmarks/realworld.py                       # trains the default run itself first

Test pictures come from mnistlab.data.photolike, seeded, the same every time: MNIST *test*
digits and Liberation-font digits on generated paper under 11 conditions (uneven light,
shadows, blur, noise and JPEG, rotation, perspective, ruled and squared paper, colour, small
digits in large photos), whole numbers of 2-6 digits, and non-digits (letters that do not look
like digits, shapes, scribbles, single taps). Nothing is trained on them.

"before" is the earlier preprocessing (one background level for the whole picture,
`to_mnist(method="global")`) with no input checks and no number reading; "after" is the
current one (`prepare`, `segment_digits`). Both use the run's not-a-digit gate
(mnistlab.notadigit.gate.DigitGate; runs trained without one get the uncalibrated fallback,
and the output says so). The tables print as markdown.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_common import machine

from mnistlab.checkpoint import load_model
from mnistlab.data import photolike
from mnistlab.data.dataset import load_dataset
from mnistlab.device import resolve_device
from mnistlab.errors import MnistlabError
from mnistlab.notadigit.gate import DigitGate
from mnistlab.predict.predict import predict
from mnistlab.predict.preprocess import prepare, to_mnist
from mnistlab.predict.segment import segment_digits

BLANK = np.zeros((28, 28), np.uint8)


def percent(hits: int, total: int) -> str:
    return f"{100.0 * hits / total:.1f}%" if total else "-"


def preprocess(samples: list[photolike.Sample], method: str
               ) -> tuple[np.ndarray, list[list[str]]]:
    """Arrays and input problems per sample ("global" has no input checks: only a failure)."""
    arrays, problems = [], []
    for s in samples:
        try:
            if method == "global":
                arrays.append(to_mnist(s.image, method="global"))
                problems.append([])
            else:
                prepared = prepare(s.image)
                arrays.append(prepared.array)
                problems.append(prepared.problems)
        except MnistlabError as e:  # no ink found: no answer, so wrong and not accepted
            arrays.append(BLANK)
            problems.append([str(e)])
    return np.stack(arrays), problems


def classify(model, normalizer, device, gate, samples, method):
    arrays, problems = preprocess(samples, method)
    return predict(model, normalizer, arrays, device, 1, gate=gate, problems=problems)


def read_number(model, normalizer, device, image: Image.Image) -> str:
    try:
        crops = segment_digits(image)
    except MnistlabError:
        return ""
    if not crops:
        return ""
    predictions = predict(model, normalizer, np.stack([c.array for c in crops]), device, 1)
    return "".join(str(p.label) for p in predictions)


def mnist_on_paper(images: np.ndarray, rng: np.random.Generator) -> list[Image.Image]:
    """MNIST test digits as large black-on-white pictures at random places and sizes."""
    out = []
    for image in images:
        digit = Image.fromarray(255 - image, mode="L")
        side = int(rng.integers(120, 260))
        page = Image.new("L", (400, 320), 255)
        page.paste(digit.resize((side, side), Image.Resampling.BICUBIC),
                   (int(rng.integers(0, 400 - side)), int(rng.integers(0, 320 - side))))
        out.append(page)
    return out


def evaluate_run(run: Path, sets: dict, device: torch.device, mnist) -> dict:
    model, normalizer, state = load_model(run, device)
    gate = DigitGate.from_state(state)
    result: dict = {"run": str(run), "gate": gate.describe(), "calibrated": gate.calibrated}
    for method in ("global", "local"):
        r: dict = {}
        started = time.perf_counter()
        for kind in ("printed", "handwritten"):
            samples = sets[kind]
            predictions = classify(model, normalizer, device, gate, samples, method)
            per: dict = defaultdict(lambda: [0, 0, 0])  # right, accepted, total
            for s, p in zip(samples, predictions, strict=True):
                cell = per[s.condition]
                cell[0] += int(str(p.label) == s.text)
                cell[1] += int(bool(p.is_digit))
                cell[2] += 1
            r[kind] = {c: list(v) for c, v in per.items()}
        predictions = classify(model, normalizer, device, gate, sets["non-digit"], method)
        rejected: dict = defaultdict(lambda: [0, 0])
        for s, p in zip(sets["non-digit"], predictions, strict=True):
            rejected[s.kind][0] += int(not p.is_digit)
            rejected[s.kind][1] += 1
        r["non-digit"] = {k: list(v) for k, v in rejected.items()}
        predictions = classify(model, normalizer, device, gate, sets["mnist-on-paper"], method)
        r["mnist-on-paper"] = [sum(bool(p.is_digit) for p in predictions), len(predictions),
                               sum(str(p.label) == s.text for p, s in
                                   zip(predictions, sets["mnist-on-paper"], strict=True))]
        if method == "local":
            for kind in ("printed", "handwritten"):
                samples = sets[f"number-{kind}"]
                read = [read_number(model, normalizer, device, s.image) for s in samples]
                r[f"number-{kind}"] = [sum(t == s.text for t, s in zip(read, samples,
                                                                        strict=True)),
                                       len(samples)]
                r[f"number-{kind}-misread"] = [(s.text, t) for t, s in
                                               zip(read, samples, strict=True)
                                               if t != s.text][:10]
        r["seconds"] = round(time.perf_counter() - started, 1)
        result[method] = r
    predictions = predict(model, normalizer, mnist.test_images.numpy(), device, 1, gate=gate)
    result["mnist-test-accepted"] = [sum(bool(p.is_digit) for p in predictions),
                                     len(predictions)]
    return result


def table(result: dict) -> str:
    before, after = result["global"], result["local"]
    lines = ["| condition | printed before | printed after | handwritten before | "
             "handwritten after |", "|---|---:|---:|---:|---:|"]
    totals = {k: [0, 0, 0, 0] for k in ("printed", "handwritten")}
    for condition in photolike.CONDITIONS:
        row = [condition]
        for kind in ("printed", "handwritten"):
            b = before[kind].get(condition, [0, 0, 0])
            a = after[kind].get(condition, [0, 0, 0])
            row += [percent(b[0], b[2]), percent(a[0], a[2])]
            totals[kind][0] += b[0]
            totals[kind][1] += a[0]
            totals[kind][2] += a[2]
            totals[kind][3] += a[1]
        lines.append("| " + " | ".join(row) + " |")
    p, h = totals["printed"], totals["handwritten"]
    lines.append(f"| **all ({p[2]} + {h[2]})** | **{percent(p[0], p[2])}** | "
                 f"**{percent(p[1], p[2])}** | **{percent(h[0], h[2])}** | "
                 f"**{percent(h[1], h[2])}** |")
    lines += ["", "| measure | n | before | after |", "|---|---:|---:|---:|"]
    for kind in ("printed", "handwritten"):
        right, total = after[f"number-{kind}"]
        lines.append(f"| whole numbers (2-6 digits) read exactly, {kind} | {total} | "
                     f"not possible | {percent(right, total)} |")
    all_nd = [0, 0, 0]
    for kind in photolike.NON_DIGIT_KINDS:
        b = before["non-digit"].get(kind, [0, 0])
        a = after["non-digit"].get(kind, [0, 0])
        all_nd[0] += b[0]
        all_nd[1] += a[0]
        all_nd[2] += a[1]
        lines.append(f"| non-digits rejected: {kind}s | {a[1]} | {percent(b[0], b[1])} | "
                     f"{percent(a[0], a[1])} |")
    lines.append(f"| **non-digits rejected, all** | {all_nd[2]} | {percent(all_nd[0], all_nd[2])}"
                 f" | **{percent(all_nd[1], all_nd[2])}** |")
    b_acc = sum(before[k][c][1] for k in ("printed", "handwritten") for c in before[k])
    a_acc = sum(after[k][c][1] for k in ("printed", "handwritten") for c in after[k])
    n = p[2] + h[2]
    lines.append(f"| digit photos accepted as digits | {n} | {percent(b_acc, n)} | "
                 f"{percent(a_acc, n)} |")
    b, a = before["mnist-on-paper"], after["mnist-on-paper"]
    lines.append(f"| MNIST test digits drawn on white paper: accepted | {a[1]} | "
                 f"{percent(b[0], b[1])} | {percent(a[0], a[1])} |")
    lines.append(f"| MNIST test digits drawn on white paper: read right | {a[1]} | "
                 f"{percent(b[2], b[1])} | {percent(a[2], a[1])} |")
    m = result["mnist-test-accepted"]
    lines.append(f"| MNIST test digits (28x28 as they are) accepted | {m[1]} | "
                 f"{percent(m[0], m[1])} | {percent(m[0], m[1])} |")
    return "\n".join(lines)


def default_run(workdir: Path) -> Path:
    from mnistlab.cli import main

    print("no run given: training the default recipe (mnistlab train) first", flush=True)
    if main(["train", "--runs-dir", str(workdir), "--name", "default"]) != 0:
        raise SystemExit("training the default run failed")
    return workdir / "default"


def build_sets(args, mnist) -> dict:
    x, y = mnist.test_images.numpy(), mnist.test_labels.numpy()
    rng = np.random.default_rng(args.seed)
    pick = rng.choice(len(y), args.mnist_on_paper, replace=False)
    return {
        "printed": photolike.digit_samples("printed", args.per_condition, args.seed),
        "handwritten": photolike.digit_samples("handwritten", args.per_condition, args.seed,
                                               x, y),
        "number-printed": photolike.number_samples("printed", args.numbers, args.seed),
        "number-handwritten": photolike.number_samples("handwritten", args.numbers, args.seed,
                                                       x, y),
        "non-digit": photolike.non_digit_samples(args.non_digits, args.seed),
        "mnist-on-paper": [photolike.Sample(im, str(int(lab)), "handwritten", "white paper")
                           for im, lab in zip(mnist_on_paper(x[pick], rng), y[pick],
                                              strict=True)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="*", type=Path, help="run directories (default: train one)")
    parser.add_argument("--per-condition", type=int, default=30,
                        help="single digits per condition and kind (default 30)")
    parser.add_argument("--numbers", type=int, default=100,
                        help="whole numbers per kind (default 100)")
    parser.add_argument("--non-digits", type=int, default=50,
                        help="non-digits per kind: letters, shapes, scribbles, taps (default 50)")
    parser.add_argument("--mnist-on-paper", type=int, default=300,
                        help="MNIST test digits drawn on white paper (default 300)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--save-samples", type=Path, default=None,
                        help="write the generated pictures into this folder (to look at them)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    mnist = load_dataset("mnist", download=False)
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        runs = args.runs or [default_run(Path(tmp))]
        sets = build_sets(args, mnist)
        print(f"test pictures: {args.per_condition} per condition x {len(photolike.CONDITIONS)}"
              f" conditions x printed/handwritten, {args.numbers} numbers per kind, "
              f"{args.non_digits} non-digits per kind, seed {args.seed}; fonts: "
              f"{photolike.fonts_used()}; built in {time.perf_counter() - started:.0f} s",
              flush=True)
        if args.save_samples:
            args.save_samples.mkdir(parents=True, exist_ok=True)
            for key, samples in sets.items():
                if key.startswith("mnist"):
                    continue
                for i, s in enumerate(samples):
                    name = f"{key}-{i:03d}-{s.condition}-{s.text or s.kind}.jpg"
                    s.image.save(args.save_samples / name, quality=95)
        results = []
        for run in runs:
            result = evaluate_run(run, sets, device, mnist)
            results.append(result)
            print(f"\n### {run}\n\n{result['gate']}\n")
            print(table(result))
            misread = result["local"]["number-handwritten-misread"][:5]
            print(f"\nsome handwritten numbers misread (true, read): {misread}")
            print(f"preprocessing + prediction: before {result['global']['seconds']} s, "
                  f"after {result['local']['seconds']} s (numbers included)")
    info = machine()
    print(f"\n{info['cpu']}, torch {info['torch']}, {time.perf_counter() - started:.0f} s in all")
    if args.json:
        buffer = io.StringIO()
        json.dump({"machine": info, "args": {k: str(v) for k, v in vars(args).items()},
                   "results": results}, buffer, indent=1, default=str)
        args.json.write_text(buffer.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
