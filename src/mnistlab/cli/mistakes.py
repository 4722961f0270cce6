"""`mnistlab mistakes CHECKPOINT`: the images a model gets wrong, and its confusion matrix."""

from __future__ import annotations

import argparse
from pathlib import Path

from mnistlab.cli.common import add_data, add_device, add_output, output_file, save
from mnistlab.errors import MnistlabError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mistakes", help="the images a model gets wrong, and its confusion matrix",
                       description="Writes two pictures: the most confident mistakes, each "
                                   "titled true → predicted (probability), to -o; and the "
                                   "confusion matrix as a heat map with counts to --confusion "
                                   "(default: the -o name with '-confusion' added).")
    p.set_defaults(func=run)
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a .pt file or a run directory")
    p.add_argument("--limit", type=int, default=32, help="mistakes shown, most confident first")
    p.add_argument("--split", choices=["train", "test"], default="test")
    add_output(p, "mistakes.png")
    p.add_argument("--confusion", default=None, metavar="FILE",
                   help="where the confusion matrix goes (default: <output>-confusion.<ext>)")
    add_data(p)
    add_device(p)


def confusion_path(output: str, fmt: str | None) -> Path:
    from mnistlab.viz.style import image_format

    path, fmt = image_format(output, fmt)
    return path.with_name(f"{path.stem}-confusion.{fmt}")


def run(args: argparse.Namespace) -> int:
    from mnistlab.checkpoint import evaluation_bf16, load_model
    from mnistlab.cli.featuremaps import load_split
    from mnistlab.data.pipeline import Split
    from mnistlab.device import resolve_device
    from mnistlab.viz.mistakes import confusion_figure, find_mistakes, mistakes_figure

    if args.limit < 1:
        raise MnistlabError(f"--limit must be at least 1, got {args.limit}")
    device = resolve_device(args.device)
    model, normalizer, state = load_model(args.checkpoint, device)
    images, labels, classes = load_split(args, state, args.split)
    mistakes = find_mistakes(model, Split(images, labels), normalizer, device,
                             num_classes=len(classes), bf16=evaluation_bf16(state, device))
    print(f"{len(mistakes):,} of {mistakes.total:,} {args.split} images wrong "
          f"({100 * (1 - len(mistakes) / max(mistakes.total, 1)):.2f}% right)")
    output = output_file(args.output, args.output_name)
    first = save(mistakes_figure(images, mistakes, classes, args.limit), args, output)
    second = save(confusion_figure(mistakes.confusion, classes), args,
                  output_file(args.confusion, "mistakes-confusion.png") if args.confusion
                  else str(confusion_path(output, args.format)))
    print(f"wrote {first}\nwrote {second}")
    return 0
