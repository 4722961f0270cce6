"""`mnistlab train`: the argument parser of a training run, kept apart from the loop."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mnistlab.cli import MODEL_NAMES as MODELS  # read without importing torch
from mnistlab.cli.common import HelpFormatter, add_data, add_device
from mnistlab.errors import MnistlabError
from mnistlab.train.config import OPTIMIZERS, RECIPES, SCHEDULES


def parse_model_arg(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got '{text}'")
    key, value = text.split("=", 1)
    for cast in (int, float):
        try:
            return key, cast(value)
        except ValueError:
            pass
    return key, value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (default: the fast CNN on MNIST)",
                       description="Train a model. Options left out come from --recipe.",
                       formatter_class=HelpFormatter)
    p.set_defaults(func=run)
    S = argparse.SUPPRESS  # None defaults: the recipe decides
    g = p.add_argument_group("what")
    g.add_argument("--recipe", choices=list(RECIPES), default="default",
                   help="the starting point for every option left out")
    g.add_argument("--model", choices=list(MODELS), default=S)
    g.add_argument("--hidden", default=S, help="MLP hidden sizes, e.g. 64 or 512,256")
    g.add_argument("--width", type=int, default=S, help="channel width of the fast model")
    g.add_argument("--model-arg", action="append", type=parse_model_arg, default=[],
                   metavar="NAME=VALUE", help="any other model argument (repeatable)")
    g.add_argument("--backend", choices=["torch", "numpy"], default=S,
                   help="numpy: the from-scratch NumPy MLP (mnistlab.scratch)")
    add_data(g)
    g.add_argument("--val-size", type=int, default=S,
                   help="training images held out for choosing the best epoch (default "
                        "5000; --recipe best: 0, which trains on all of them and keeps the "
                        "last epoch)")
    g = p.add_argument_group("how")
    g.add_argument("--epochs", type=int, default=S)
    g.add_argument("--batch-size", type=int, default=S)
    g.add_argument("--eval-batch-size", type=int, default=S)
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=S)
    g.add_argument("--lr", type=float, default=S, help="learning rate (peak for onecycle)")
    g.add_argument("--momentum", type=float, default=S)
    g.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=S)
    g.add_argument("--weight-decay", type=float, default=S)
    g.add_argument("--schedule", choices=SCHEDULES, default=S)
    g.add_argument("--step-size", type=int, default=S, help="epochs between decays (step)")
    g.add_argument("--gamma", type=float, default=S, help="decay factor (step)")
    g.add_argument("--label-smoothing", type=float, default=S)
    g.add_argument("--augment", action=argparse.BooleanOptionalAction, default=S,
                   help="random shifts, rotations and scaling per batch")
    g.add_argument("--elastic", type=float, default=S, metavar="PIXELS",
                   help="with --augment, also bend every image by a smooth random "
                        "displacement field of this many pixels (standard deviation; 0: off)")
    g.add_argument("--ema", type=float, default=S, metavar="DECAY",
                   help="keep an exponential moving average of the weights with this decay "
                        "(e.g. 0.999), updated after every step; the average is validated, "
                        "chosen, tested and saved, and summary.json's raw_weights gives the "
                        "trained weights' figures beside it (default: off; 0: off)")
    g.add_argument("--members", type=int, default=S, metavar="K",
                   help="train K copies of the model, each with its own seed (initial "
                        "weights, batch order) on the same validation split, one after the "
                        "other, and save them as one ensemble that averages their softmax "
                        "(RUN/members/ holds each member's own run)")
    g.add_argument("--patience", type=int, default=S,
                   help="stop after this many epochs without a better validation accuracy")
    # reject: not a digit (notadigit/exposure.py, docs/not-a-digit.md)
    g.add_argument("--outlier-exposure", choices=["auto", "on", "off"], default=S,
                   help="train with generated non-digits (and printed digits) and calibrate "
                        "a 'not a digit' threshold on validation (auto: on for MNIST with the "
                        "torch backend)")
    g.add_argument("--negatives-exclude", metavar="KIND[,KIND]", default=S,
                   help="leave these negative families out of outlier exposure, to measure "
                        "how rejection carries over to a family never trained on "
                        "(benchmarks/realworld.py --lofo); the families: letter, scribble, "
                        "zigzag, shape, blob, dots, noise, bars, strokes (default: none)")
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, default=S)
    g.add_argument("--split-seed", type=int, default=S,
                   help="seed of the validation split (default: --seed), so that runs of "
                        "other seeds are chosen on the same validation images")
    g.add_argument("--deterministic", action="store_true", default=S,
                   help="deterministic algorithms only (bit-exact resume); an operation with "
                        "none on this device is an error, not a warning")
    add_device(g)
    g.add_argument("--bf16", choices=["auto", "on", "off"], default=S,
                   help="bf16 autocast (auto: whichever of bf16 and fp32 trains faster, "
                        "measured on a few real steps at start-up and cached)")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=S,
                   help="channels-last memory layout for conv nets (default: measured, as --bf16 "
                        "auto)")
    g.add_argument("--threads", type=int, default=S,
                   help="CPU threads for torch, fixed (default: 1 or all cores, whichever "
                        "trains faster, measured at start-up and adapted while training when "
                        "other work slows the machine)")
    g.add_argument("--track-test", action="store_true", default=S,
                   help="also log test metrics every epoch, for curves (never for selection)")
    g.add_argument("--dry-run", action="store_true", default=S,
                   help="one batch of training and one of evaluation; the run is marked "
                        '"dry_run": true in config.json and summary.json, not a result')
    g.add_argument("--log-interval", type=int, default=S, help="steps between logged rows")
    g.add_argument("--runs-dir", default=S, help="parent folder of run directories")
    g.add_argument("--name", default=S, help="run name (default: <model>-<date>-<time>, "
                   "with the data set after the model unless it is mnist)")
    g.add_argument("--resume", metavar="RUN", default=None,
                   help="continue a run from its last.pt, exactly where it stopped, with its "
                        "own options; with --epochs N, extend it to N epochs (one-cycle and "
                        "cosine then add a cosine tail from a tenth of --lr)")
    g = p.add_argument_group("extras")
    g.add_argument("--doctor", action="store_true",
                   help="examine the model and setup for common mistakes before training")
    g.add_argument("--report", action="store_true", help="write RUN/report.html at the end")
    g.add_argument("--tensorboard", action="store_true",
                   help="log to TensorBoard (needs the tensorboard package)")
    _show_recipe_defaults(p)


def _show_recipe_defaults(parser: argparse.ArgumentParser) -> None:
    """Options left out come from the recipe, so their parser default is SUPPRESS: say in the
    help what the default recipe gives them (TrainConfig holds the only copy)."""
    import dataclasses

    from mnistlab.train.config import TrainConfig

    values = {f.name: f.default for f in dataclasses.fields(TrainConfig)
              if f.default is not dataclasses.MISSING}
    values.update(RECIPES["default"])
    for action in parser._actions:
        value = values.get(action.dest)
        if (action.default is not argparse.SUPPRESS or value is None
                or "default" in (action.help or "")
                or isinstance(action, argparse._StoreTrueAction)):
            continue
        shown = ("on" if value else "off") if isinstance(value, bool) else value
        action.help = f"{action.help or ''} (default: {shown})".lstrip()


def config_from_args(args: argparse.Namespace):
    from mnistlab.train.config import resolve_config

    options = dict(vars(args))
    for key in ("func", "command", "resume", "recipe", "model_arg", "hidden", "width", "doctor",
                "report", "tensorboard"):
        options.pop(key, None)
    model_args = dict(args.model_arg)
    if getattr(args, "hidden", None) is not None:
        model_args["hidden"] = args.hidden
    if getattr(args, "width", None) is not None:
        model_args["width"] = args.width
    if model_args:
        options["model_args"] = model_args
    return resolve_config(args.recipe, **options)


# Options that --resume honours (where and how to run, and --epochs to extend the run);
# every other one comes from the run.
_RESUME_KEEPS = {"func", "command", "resume", "device", "threads", "doctor", "report",
                 "tensorboard", "download", "epochs"}


def options_ignored_on_resume(args: argparse.Namespace) -> list[str]:
    given = [k for k, v in vars(args).items() if k not in _RESUME_KEEPS and v not in (None, [])]
    given = [k for k in given if not (k == "recipe" and args.recipe == "default")]
    return ["--" + k.replace("_", "-") for k in sorted(given)]


def run(args: argparse.Namespace) -> int:
    from mnistlab.train import clock

    clock.mark_command_start()  # the final line then reports the whole command's time
    from mnistlab.train import train

    config = config_from_args(args)  # every option checked before any work
    if args.resume is None and config.name is not None:
        from mnistlab.train.rundir import RunDir

        RunDir.check_new(config.runs_dir, config.name)  # before the data and the doctor
    plan = None
    if args.resume is not None:
        from mnistlab.train.members import resume_config
        from mnistlab.train.resume import plan_resume

        ignored = options_ignored_on_resume(args)
        if ignored:
            print(f"mnistlab: note: --resume continues with the run's own options; ignoring "
                  f"{', '.join(ignored)}", file=sys.stderr)
        epochs = getattr(args, "epochs", None)
        ensemble = resume_config(args.resume, config, epochs)
        if ensemble is not None:  # members resumed one by one: train() plans each
            plan, config = args.resume, ensemble
        else:
            plan = plan_resume(args.resume, config, epochs)
            config = plan.config  # the run's model, data set and recipe: what --doctor examines
    elif config.backend == "torch":
        from mnistlab.models import model_arguments

        unknown = set(config.model_args) - set(model_arguments(config.model))
        if unknown:
            raise MnistlabError(f"--model {config.model} takes no {', '.join(sorted(unknown))} "
                                f"(it takes: {', '.join(model_arguments(config.model)) or 'none'})")
    if args.report and config.members > 1:
        raise MnistlabError("--report: an ensemble run (--members) has no curves of its own; "
                            "train it, then run `mnistlab report RUN/members/member-N` for "
                            "each member")
    if config.backend == "numpy":
        from mnistlab.train.numpy_backend import check_supported

        if args.tensorboard:
            raise MnistlabError("--tensorboard: not supported by the numpy backend (it "
                                "writes metrics.csv; see mnistlab plot)")
        check_supported(config)  # before the doctor or the data: refuse early
    data = None
    if args.doctor:
        from mnistlab.data.dataset import load_dataset
        from mnistlab.doctor import doctor_before_training

        # Loaded once, for the doctor and then for training: the run's own data set.
        data = load_dataset(config.dataset, config.data_dir, config.download)
        doctor_before_training(config, data=data)  # prints its report; raises on errors
    callbacks = []
    if args.tensorboard:
        from mnistlab.viz.tensorboard import TensorBoardCallback

        callbacks.append(TensorBoardCallback())
    result = train(config, data=data, resume=plan, callbacks=callbacks)
    if args.report:
        from mnistlab.viz.report import write_report

        print(f"wrote {write_report(result.run_dir)}")
    return 0
