"""`mnistlab predict`: classify your own digit images or photos with a trained model."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from mnistlab.cli.common import (
    add_device,
    add_json,
    add_threads,
    output_folder,
    print_json,
    to_stderr,
)

EXPLANATION = (
    "How to read this: the network outputs one raw score (logit) per class; softmax turns the "
    "scores into probabilities that sum to 1 (p_i = exp(z_i) / sum_j exp(z_j)). Softmax keeps "
    "the order, so the class with the largest logit is the most probable one; only differences "
    "between logits matter, and a lead of about 2.3 in logits means 10 times more probable.")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify your own digit images or photos",
                       description="Classify image files (PNG, JPEG, ...; or folders of them). "
                                   "Each image is brought into MNIST form first: the paper's "
                                   "brightness estimated locally and removed, the ink "
                                   "thresholded, ruled lines and specks dropped, the digit's "
                                   "connected ink cropped, longer side scaled to 20 px, "
                                   "centred by centre of mass in 28x28. Pictures that do not "
                                   "look like a digit are answered 'not a digit'. With "
                                   "--number, every digit in the picture is read, left to "
                                   "right.")
    p.set_defaults(func=run)
    p.add_argument("checkpoint", metavar="CHECKPOINT_OR_RUN",
                   help="a checkpoint file or a run directory (its best.pt; see --last)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    p.add_argument("--number", action="store_true",
                   help="read a whole number: every digit in the picture, left to right")
    p.add_argument("--top-k", type=int, default=None,
                   help="how many classes to list (default 3; not with --number)")
    p.add_argument("--explain", action="store_true",
                   help="show the raw logits next to the probabilities, and how to read them "
                        "(not with --number)")
    p.add_argument("--save-preprocessed", metavar="DIR", default=None,
                   help="write the 28x28 image the network saw, as PNG, into DIR; with "
                        "--number, the picture with the digits' boxes drawn and each digit's "
                        "28x28 image")
    p.add_argument("--no-denoise", dest="denoise", action="store_false",
                   help="keep faint background texture inside the digit's box instead of "
                        "only the digit's own ink")
    p.add_argument("--last", action="store_true",
                   help="use the run's last.pt (the latest weights) rather than best.pt (the "
                        "best on validation); needed for a run stopped before its first "
                        "epoch ended")
    add_device(p)
    add_threads(p, "classifies a folder's pictures")
    add_json(p)


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm",
                  ".ppm", ".pbm", ".pnm"}


def expand(paths: list[str]) -> list[Path]:
    """Files as given; folders become their image files (by suffix, sorted, not recursive)."""
    files: list[Path] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            files += sorted(p for p in path.iterdir()
                            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(path)
    return files


def run(args: argparse.Namespace) -> int:
    from mnistlab.device import resolve_device
    from mnistlab.errors import MnistlabError
    from mnistlab.predict import load_image
    from mnistlab.predict.reader import Reader
    from mnistlab.text import plural
    from mnistlab.train.threads import check_forced

    check_forced(args.threads)
    if args.number:
        refused = [name for name, given in (("--no-denoise", not args.denoise),
                                            ("--top-k", args.top_k is not None),
                                            ("--explain", args.explain)) if given]
        if refused:
            raise MnistlabError(f"{', '.join(refused)} does not apply to --number (each digit "
                                "is cut from its own ink and shown with its top class)")
    args.top_k = 3 if args.top_k is None else args.top_k
    if args.top_k < 1:
        raise MnistlabError(f"--top-k must be at least 1, got {args.top_k}")
    save_to = (output_folder(args.save_preprocessed, "--save-preprocessed")
               if args.save_preprocessed else None)
    files = expand(args.images)
    if not files:
        raise MnistlabError(f"no image files in {', '.join(args.images)}")
    reader = Reader.from_run(args.checkpoint, resolve_device(args.device), last=args.last,
                             top_k=args.top_k)
    if reader.note:
        print(f"note: {reader.note}", file=sys.stderr)
    # The pictures' preprocessing is NumPy and PIL; PyTorch's share is small forward passes
    # (a picture's digits, the number hint), which one thread runs best (docs/serve.md),
    # and the batched pass over all pictures, whose count is chosen below.
    start_threads(args.threads, reader.device, len(files))

    good: list[Path] = []
    items: list = []  # per good file: a Looked, or a NumberReading (--number)
    failures: list[str] = []
    for path in files:
        try:
            image = load_image(path)
            items.append(reader.read_number(image) if args.number
                         else reader.look(image, denoise=args.denoise))
        except MnistlabError as e:
            message = str(e)
            failures.append(message if message.startswith(str(path)) else f"{path}: {message}")
            continue
        good.append(path)
    if not args.number and len(items) > 1:
        batch_threads(reader, items, args.threads)
    readings = items if args.number else reader.read_looked(items)
    for message in failures:
        print(f"mnistlab: error: {message}", file=sys.stderr)
    if not good:
        return 2
    if save_to is not None:
        save_preprocessed(save_to, good, readings, args.number)

    gate = reader.gate
    gate_info = {"calibrated": gate.calibrated, "description": gate.describe()}
    if args.json:
        if args.number:
            entries = [{"file": str(path), **r.to_dict()} for path, r in
                       zip(good, readings, strict=True)]
        else:
            entries = [{"file": str(path), **r.prediction.to_dict(reader.classes)}
                       for path, r in zip(good, readings, strict=True)]
        print_json({"checkpoint": reader.state["path"], "dataset": reader.state.get("dataset"),
                    "digit_gate": gate_info, "predictions": entries, "errors": failures})
    else:
        for path, r in zip(good, readings, strict=True):
            if args.number:
                print(format_number(path, r))
            else:
                print(format_prediction(path, r.prediction, reader.classes, args.explain))
        if args.explain:
            print("\n" + textwrap.fill(EXPLANATION, width=100))
            print(gate.describe())
        if args.save_preprocessed:
            print(f"wrote the preprocessed images of {plural(len(good), 'picture')} to "
                  f"{save_to}")
    return 2 if failures else 0


def start_threads(forced: int | None, device, files: int) -> None:
    """The thread count for the pictures' own small forward passes. A single picture is
    not measured: its forward passes take milliseconds, less than measuring them would,
    and serving measured one thread best for one small image (docs/serve.md); so one
    thread, said only when forced (the one-picture output stays as it was)."""
    import torch

    from mnistlab.train.threads import choose_for_inference

    if forced is not None or device.type != "cpu":
        choose_for_inference(lambda: None, steps=None, forced=forced, device=device,
                             say=to_stderr if forced is not None or files > 1 else None)
    else:
        # With --number there is no batched pass (each picture's digits go through on their
        # own), so this one thread stays, unmeasured and unsaid, as for a single picture.
        torch.set_num_threads(1)


def batch_threads(reader, items: list, forced: int | None) -> None:
    """The thread count for the batched pass over many pictures: measured on the first
    batch of their 28x28 images where that pass is long enough to repay it
    (choose_for_inference), else one thread; forced and GPU counts are already set."""
    import numpy as np
    import torch

    from mnistlab.predict.predict import BATCH
    from mnistlab.train.threads import choose_for_inference, forward_step

    if forced is not None or reader.device.type != "cpu":
        return
    first = torch.as_tensor(np.stack([seen.prepared.array for seen in items[:BATCH]]))
    x = reader.normalizer(first.to(reader.device))
    choose_for_inference(forward_step(reader.model, x), steps=-(-len(items) // BATCH),
                         forced=None, device=reader.device, say=to_stderr,
                         after="fixed for the batched pass")


def save_preprocessed(out: Path, files: list[Path], readings: list, number: bool) -> None:
    """Each 28x28 image the network saw; with --number also the picture with boxes drawn."""
    from PIL import Image

    from mnistlab.atomic import write_with
    from mnistlab.errors import MnistlabError
    from mnistlab.predict import load_image
    from mnistlab.predict.segment import draw_boxes

    def write(image: Image.Image, name: str) -> None:
        try:
            write_with(out / name, lambda f: image.save(f, format="PNG"))
        except OSError as e:  # a full disk, a folder made read-only meanwhile
            raise MnistlabError(f"{out / name}: cannot write ({e.strerror or e})") from None

    used: set[str] = set()
    for path, reading in zip(files, readings, strict=True):
        name = path.stem if path.stem not in used else f"{path.stem}-{len(used)}"
        used.add(name)
        if not number:
            write(Image.fromarray(reading.prepared.array, mode="L"), f"{name}.png")
            continue
        labels = [str(p.label) for p in reading.predictions]
        write(draw_boxes(load_image(path), [c.box for c in reading.crops], labels),
              f"{name}-boxes.png")
        for i, crop in enumerate(reading.crops):
            write(Image.fromarray(crop.array, mode="L"), f"{name}-digit{i + 1}.png")


def format_number(path: Path, number) -> str:
    """`path: 2026  (2 99.1%, 0 98.7%, ...)`, or `path: not a number (...)` when a digit
    fails the gate, with the best guess."""
    classes = number.classes
    digits = ", ".join(f"{classes[p.label]} {p.probability:.1%}" + ("" if p.is_digit else
                                                                     " not a digit")
                       for p in number.predictions)
    if not number.predictions:
        return f"{path}: (no digits)"
    if not number.is_number:
        return f"{path}: not a number (best guess {number.text}: {digits})"
    return f"{path}: {number.text}  ({digits})"


def format_prediction(path: Path, p, classes: list[str], explain: bool) -> str:
    if p.is_digit is False:
        head = f"{path}: not a digit (best guess {classes[p.label]}, {p.probability:.1%})"
        if p.reason and "read it as a number" in p.reason:
            head += "; it looks like a number: try --number"
    else:
        head = f"{path}: {classes[p.label]} ({p.probability:.1%})"
    if not explain:
        others = ", ".join(f"{classes[i]} {prob:.1%}" for i, prob in p.top[1:])
        return head + (f"   next: {others}" if others and p.is_digit is not False else "")
    rows = [head]
    if p.reason:
        rows.append(f"  why not a digit: {p.reason}")
    rows.append(f"  {'class':>10}  {'logit':>8}  {'probability':>11}")
    for i, prob in p.top:
        rows.append(f"  {classes[i]:>10}  {p.logits[i]:8.3f}  {prob:11.4%}")
    return "\n".join(rows)
