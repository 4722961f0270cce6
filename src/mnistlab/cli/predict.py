"""`mnistlab predict`: classify your own digit images or photos with a trained model."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from mnistlab.cli.common import add_device, add_json, print_json

EXPLANATION = (
    "How to read this: the network outputs one raw score (logit) per class; softmax turns the "
    "scores into probabilities that sum to 1 (p_i = exp(z_i) / sum_j exp(z_j)). Softmax keeps "
    "the order, so the class with the largest logit is the most probable one; only differences "
    "between logits matter, and a lead of about 2.3 in logits means 10 times more probable.")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify your own digit images or photos",
                       description="Classify image files (PNG, JPEG, ...; or folders of them). "
                                   "Each image is brought into MNIST form first: grayscale, "
                                   "inverted if the background is light, cropped to the ink, "
                                   "longer side scaled to 20 px, centred by centre of mass in "
                                   "28x28.")
    p.set_defaults(func=run)
    p.add_argument("checkpoint", metavar="CHECKPOINT_OR_RUN",
                   help="a checkpoint file or a run directory (its best.pt)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    p.add_argument("--top-k", type=int, default=3, help="how many classes to list (default 3)")
    p.add_argument("--explain", action="store_true",
                   help="show the raw logits next to the probabilities, and how to read them")
    p.add_argument("--save-preprocessed", metavar="DIR", default=None,
                   help="write the 28x28 image the network saw, as PNG, into DIR")
    p.add_argument("--no-denoise", dest="denoise", action="store_false",
                   help="keep faint background texture instead of clearing it to black")
    add_device(p)
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
    import numpy as np
    from PIL import Image

    from mnistlab.atomic import write_with
    from mnistlab.checkpoint import load_model
    from mnistlab.device import resolve_device
    from mnistlab.errors import MnistlabError
    from mnistlab.predict import load_image, predict, to_mnist

    if args.top_k < 1:
        raise MnistlabError(f"--top-k must be at least 1, got {args.top_k}")
    device = resolve_device(args.device)
    model, normalizer, state = load_model(args.checkpoint, device)
    classes = list(state.get("classes") or [str(i) for i in range(10)])
    files = expand(args.images)
    if not files:
        raise MnistlabError(f"no image files in {', '.join(args.images)}")

    good: list[Path] = []
    arrays: list[np.ndarray] = []
    failures: list[str] = []
    for path in files:
        try:
            arrays.append(to_mnist(load_image(path), denoise=args.denoise))
        except MnistlabError as e:
            message = str(e)
            failures.append(message if message.startswith(str(path)) else f"{path}: {message}")
            continue
        good.append(path)
    for message in failures:
        print(f"mnistlab: error: {message}", file=sys.stderr)
    if not good:
        return 2

    predictions = predict(model, normalizer, np.stack(arrays), device, args.top_k)
    if args.save_preprocessed:
        out = Path(args.save_preprocessed)
        used: set[str] = set()
        for path, array in zip(good, arrays, strict=True):
            name = path.stem if path.stem not in used else f"{path.stem}-{len(used)}"
            used.add(name)
            target = out / f"{name}.png"
            image = Image.fromarray(array, mode="L")
            write_with(target, lambda f, image=image: image.save(f, format="PNG"))

    if args.json:
        print_json({"checkpoint": state["path"], "dataset": state.get("dataset"),
                    "predictions": [{"file": str(path), **p.to_dict(classes)}
                                    for path, p in zip(good, predictions, strict=True)],
                    "errors": failures})
    else:
        for path, p in zip(good, predictions, strict=True):
            print(format_prediction(path, p, classes, args.explain))
        if args.explain:
            print("\n" + textwrap.fill(EXPLANATION, width=100))
        if args.save_preprocessed:
            print(f"wrote {len(good)} preprocessed image(s) to {args.save_preprocessed}")
    return 2 if failures else 0


def format_prediction(path: Path, p, classes: list[str], explain: bool) -> str:
    head = f"{path}: {classes[p.label]} ({p.probability:.1%})"
    if not explain:
        others = ", ".join(f"{classes[i]} {prob:.1%}" for i, prob in p.top[1:])
        return head + (f"   next: {others}" if others else "")
    rows = [head, f"  {'class':>10}  {'logit':>8}  {'probability':>11}"]
    for i, prob in p.top:
        rows.append(f"  {classes[i]:>10}  {p.logits[i]:8.3f}  {prob:11.4%}")
    return "\n".join(rows)
