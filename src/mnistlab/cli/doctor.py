"""`mnistlab doctor`: find what is wrong with a digit classifier and its training setup."""

from __future__ import annotations

import argparse
import dataclasses

from mnistlab.cli.common import add_data, add_device, add_json, print_json
from mnistlab.errors import MnistlabError

EPILOG = """examples:
  mnistlab doctor --model lenet5
  mnistlab doctor my_net.py:Net --loss nll --optimizer adam --lr 1e-3 --epochs 5
  mnistlab doctor examples/pitfalls/relu_output.py:Net --lr 0.01 --no-normalize
  mnistlab doctor --checkpoint runs/fast-1 --eval my_eval.py:evaluate
exit status: 1 when an error is found, 0 otherwise."""


def register(sub: argparse._SubParsersAction) -> None:
    from mnistlab.cli.train import parse_model_arg
    from mnistlab.train.config import OPTIMIZERS, SCHEDULES, TrainConfig

    # = mnistlab.doctor.losses.LOSS_NAMES, spelled out: that module imports torch, which
    # `mnistlab --help` must not (speed; tests/test_speed.py checks the two agree)
    LOSS_NAMES = ("cross_entropy", "nll", "mse")

    train_defaults = TrainConfig()

    p = sub.add_parser(
        "doctor", help="find what is wrong with a model and its training setup, and the fix",
        description="Examine a model (zoo, your own file, or a checkpoint) and how you train it "
                    "on a few real batches; report each problem with evidence and a fix.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=run)
    what = p.add_argument_group("what to examine (one of)")
    what.add_argument("target", nargs="?", metavar="FILE.py:NAME",
                      help="your model: a class or function in a Python file that returns an "
                           "nn.Module")
    what.add_argument("--model", help="a zoo model (see mnistlab models)")
    what.add_argument("--model-arg", action="append", type=parse_model_arg, default=[],
                      metavar="NAME=VALUE", help="a zoo model argument (repeatable)")
    what.add_argument("--checkpoint", metavar="PATH",
                      help="a trained checkpoint or run directory (skips the from-scratch checks)")
    how = p.add_argument_group("how you train it")
    how.add_argument("--loss", choices=LOSS_NAMES, default="cross_entropy")
    how.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd")
    how.add_argument("--lr", type=float, default=None,
                     help=f"learning rate (default {train_defaults.lr:g}, as mnistlab train)")
    how.add_argument("--momentum", type=float, default=None,
                     help=f"for sgd (default {train_defaults.momentum:g})")
    how.add_argument("--weight-decay", type=float, default=None,
                     help=f"(default {train_defaults.weight_decay:g} for --model, as mnistlab "
                          "train; 0 for your own file)")
    how.add_argument("--schedule", choices=SCHEDULES, default=None,
                     help="onecycle starts at lr/10 (default: onecycle for --model, as mnistlab "
                          "train; none for your own file)")
    how.add_argument("--batch-size", type=int, default=None,
                     help=f"(default {train_defaults.batch_size})")
    how.add_argument("--epochs", type=int, default=None,
                     help=f"(default {train_defaults.epochs}; with --checkpoint: not checked "
                          "unless given)")
    how.add_argument("--val-size", type=int, default=None,
                     help=f"training images held out for validation, so one epoch is the "
                          f"rest (default {train_defaults.val_size:,} for --model, as mnistlab "
                          "train; the run's for --checkpoint; 0 for your own file)")
    how.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=True,
                     help="inputs standardised with the data set's mean and std (--no-normalize:"
                          " pixels scaled to [0, 1] only, as ToTensor() does)")
    how.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=True,
                     help="training batches reshuffled every epoch")
    how.add_argument("--train-on-test", action="store_true",
                     help="the test split is part of your training data")
    how.add_argument("--select-on-test", action="store_true",
                     help="you choose the best epoch or settings by test accuracy")
    how.add_argument("--eval", metavar="FILE.py:FUNC", dest="eval_fn",
                     help="your evaluation function eval(model, x) -> logits, checked for "
                          "training mode")
    how.add_argument("--seed", type=int, default=0)
    add_data(p)
    add_device(p)
    add_json(p)


def _build_model(args: argparse.Namespace, device):
    """(model, name, trained, checkpoint state or None) from exactly one of FILE:NAME, --model,
    --checkpoint."""
    given = [x for x in (args.target, args.model, args.checkpoint) if x]
    if len(given) != 1:
        raise MnistlabError("give exactly one of FILE.py:NAME, --model NAME or --checkpoint PATH"
                            + (f" (got {len(given)})" if given else ""))
    if args.checkpoint:
        from mnistlab.checkpoint import load_model

        model, _, state = load_model(args.checkpoint, "cpu")
        return model, f"checkpoint {state['path']} ({state['model']['name']})", True, state
    if args.model:
        from mnistlab.models import create_model

        model = create_model(args.model, **dict(args.model_arg))
        return model, f"{args.model} {dict(args.model_arg) or ''}".strip(), False, None
    from mnistlab.doctor.loading import load_user_model

    return load_user_model(args.target), args.target, False, None


def run(args: argparse.Namespace) -> int:
    import torch

    from mnistlab.checkpoint import checkpoint_dataset
    from mnistlab.data.dataset import load_dataset
    from mnistlab.device import resolve_device
    from mnistlab.doctor import examine_config
    from mnistlab.train.config import TrainConfig, resolve_config

    device = resolve_device(args.device)
    torch.manual_seed(args.seed)  # the same random init, hence the same report, every run
    model, name, trained, state = _build_model(args, device)
    # A zoo model is examined as `mnistlab train` would train it, a checkpoint as its run was
    # trained; a user's own file with the plain setup its author most likely wrote (no
    # schedule, no weight decay, every training image: no validation hold-out).
    own = not args.model and state is None
    explicit = dict(optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
                    weight_decay=args.weight_decay, schedule=args.schedule,
                    batch_size=args.batch_size, epochs=args.epochs, val_size=args.val_size,
                    seed=args.seed, device=str(device))
    if own:
        explicit = {"nesterov": False, **explicit,
                    **{k: v for k, v in (("weight_decay", 0.0), ("schedule", "none"),
                                         ("val_size", 0)) if explicit[k] is None}}
    if state is not None:  # the run's own settings, under what the command line gives
        ran = TrainConfig.from_dict(state.get("config") or {})
        config = dataclasses.replace(ran, **{k: v for k, v in explicit.items() if v is not None})
        config.validate()
        data = checkpoint_dataset(state, args.dataset, args.data_dir, args.download)
    else:
        config = resolve_config(**explicit)
        data = load_dataset(args.dataset or "mnist", args.data_dir, args.download)
    eval_fn = None
    if args.eval_fn:
        from mnistlab.doctor.loading import load_attribute

        eval_fn = load_attribute(args.eval_fn)
        if not callable(eval_fn):
            raise MnistlabError(f"--eval {args.eval_fn}: is not a function")
    report = examine_config(
        config, data=data, model=model, subject=name, loss_fn=args.loss,
        normalize=args.normalize, shuffle=args.shuffle, trains_on_test=args.train_on_test,
        selects_on_test=args.select_on_test, eval_fn=eval_fn, trained=trained,
        # A checkpoint's update count is checked only when asked (--epochs).
        epochs=None if trained and args.epochs is None else config.epochs)
    if args.json:
        print_json(report.to_dict())
    else:
        print(report.format())
    return report.exit_code
