"""`mnistlab eval`: test metrics of a checkpoint or run directory."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from mnistlab.cli.common import (
    add_data,
    add_device,
    add_json,
    add_threads,
    print_json,
    to_stderr,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="test loss, accuracy, per-class accuracy, confusion matrix")
    p.set_defaults(func=run)
    p.add_argument("checkpoint", metavar="CHECKPOINT_OR_RUN")
    p.add_argument("--split", choices=["test", "val", "train"], default="test",
                   help="test (default); val: the run's validation split, which chose best.pt "
                        "(same seed and size); train: the rest of its training set")
    p.add_argument("--last", action="store_true",
                   help="evaluate last.pt (the latest weights) rather than best.pt")
    p.add_argument("--batch-size", type=int, default=1000)
    add_data(p)
    add_device(p)
    add_threads(p, "evaluates")
    add_json(p)


def run(args: argparse.Namespace) -> int:
    import sys

    from mnistlab.checkpoint import (
        checkpoint_dataset,
        checkpoint_note,
        dataset_mismatch,
        evaluation_bf16,
        load_model,
    )
    from mnistlab.data.pipeline import Batcher
    from mnistlab.device import resolve_device
    from mnistlab.errors import MnistlabError
    from mnistlab.evaluate import checkpoint_split, evaluate_batches, format_confusion
    from mnistlab.train.threads import check_forced

    if args.batch_size < 1:
        raise MnistlabError(f"--batch-size must be at least 1, got {args.batch_size}")
    check_forced(args.threads)
    device = resolve_device(args.device)
    model, normalizer, state = load_model(args.checkpoint, device,
                                          prefer="last.pt" if args.last else "best.pt")
    note = checkpoint_note(state)
    if note:
        print(f"mnistlab: note: {note}", file=sys.stderr)
    data = checkpoint_dataset(state, args.dataset, args.data_dir, args.download)
    warning = dataset_mismatch(state, data.name)
    if warning and args.json:  # the text says it under its first line, JSON in a field
        print(f"mnistlab: warning: {warning}", file=sys.stderr)
    split = checkpoint_split(state, data, args.split)
    # Evaluate in the precision the run was trained and reported in, so numbers agree.
    bf16 = evaluation_bf16(state, device)
    batcher = Batcher(split, args.batch_size, normalizer, device=device)
    choice, control = evaluation_threads(model, batcher, bf16=bf16, forced=args.threads,
                                         say=to_stderr)
    result = evaluate_batches(model, batcher, bf16,
                              tick=control.tick if control is not None else None)
    if args.json:
        threads = {**choice.to_dict(), **(control.summary() if control is not None else {})}
        print_json({"checkpoint": state["path"], "dataset": data.name,
                    "trained_on": state.get("dataset") or "mnist", "warning": warning,
                    "split": args.split, **result.to_dict(), "threads": threads})
        return 0
    print(f"{state['path']}: {state['model']['name']} on {data.name} {args.split} "
          f"({'bf16' if bf16 else 'fp32'}, {device})")
    if warning:
        print(f"WARNING: {warning}")
    print(f"loss {result.loss:.4f}  accuracy {result.accuracy:.2%} "
          f"({result.correct}/{result.total})")
    print("per-class accuracy: " + "  ".join(
        f"{c}: {a:.1%}" for c, a in zip(data.classes, result.per_class_accuracy, strict=True)))
    print(format_confusion(result.confusion, data.classes))
    return 0


def evaluation_threads(model: Any, batcher: Any, *, bf16: bool = False,
                       forced: int | None = None,
                       say: Callable[[str], None] | None = None) -> tuple[Any, Any]:
    """(ThreadChoice, ThreadController or None) for evaluating `batcher`'s split: measured
    on its first real batch (mnistlab.train.threads.choose_for_inference), adapting per
    batch where it was measured."""
    from mnistlab.train.threads import ThreadController, choose_for_inference, forward_step

    first = None
    if forced is None and batcher.device.type == "cpu":  # else nothing is timed
        first = next(iter(batcher.epoch(0)), None)
    if first is None:  # forced, a GPU, or an empty split (no work: one thread)
        return choose_for_inference(lambda: None, steps=0, forced=forced,
                                    device=batcher.device, say=say), None
    choice = choose_for_inference(forward_step(model, first[0], bf16=bf16), steps=len(batcher),
                                  forced=forced, device=batcher.device, say=say,
                                  after="adapts while evaluating")
    return choice, ThreadController.from_choice(choice, say=say)

