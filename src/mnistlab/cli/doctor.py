"""`mnistlab doctor`: find what is wrong with a training script, or a model and its setup."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from mnistlab.cli.common import (
    add_data,
    add_device,
    add_json,
    add_threads,
    print_json,
    to_stderr,
)
from mnistlab.errors import MnistlabError

EPILOG = """examples:
  mnistlab doctor train.py                      # run your training script and watch it
  mnistlab doctor --json --steps 100 train.py --epochs 3     # script arguments after it
  mnistlab doctor --model lenet5                # a zoo model, as mnistlab train trains it
  mnistlab doctor my_net.py:Net --optimizer adam --lr 1e-3 --epochs 5
  mnistlab doctor my_net.py:Net --weights state.pt           # a trained state_dict
  mnistlab doctor --checkpoint runs/fast-1 --eval my_eval.py:evaluate
Options for the doctor go before the script's path; everything after it is the script's.
exit status: 1 when an error is found, 0 otherwise."""

DEFAULT_STEPS, DEFAULT_SECONDS = 300, 30.0
ASSUMED_LR = 0.01  # a file's model, no --lr: a plain SGD rate for a model without a schedule
# Options of the model mode (FILE.py:NAME, --model, --checkpoint) and of the script mode.
MODEL_OPTIONS = ("model", "checkpoint", "weights", "loss", "optimizer", "lr", "momentum",
                 "weight_decay", "schedule", "batch_size", "epochs", "val_size", "normalize",
                 "shuffle", "eval_fn", "seed", "dataset", "data_dir")
SCRIPT_OPTIONS = ("steps", "seconds")


def register(sub: argparse._SubParsersAction) -> None:
    from mnistlab.cli.train import parse_model_arg
    from mnistlab.train.config import OPTIMIZERS, SCHEDULES, TrainConfig

    # = mnistlab.doctor.losses.LOSS_NAMES, spelled out: that module imports torch, which
    # `mnistlab --help` must not (speed; tests/test_speed.py checks the two agree)
    LOSS_NAMES = ("cross_entropy", "nll", "mse")

    train_defaults = TrainConfig()

    p = sub.add_parser(
        "doctor", help="run your training script (or examine a model) and say what is wrong",
        description="Run a training script unchanged under instrumentation for a few hundred "
                    "steps and report each problem with evidence and a fix; or examine a "
                    "model (zoo, your own file, a checkpoint) and how you train it.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=run, doctor_parser=p)
    what = p.add_argument_group("what to examine (one of)")
    what.add_argument("target", nargs="?", metavar="SCRIPT.py | FILE.py:NAME",
                      help="your training script (run as __main__, in its own folder), or a "
                           "class or function in a Python file that returns an nn.Module")
    what.add_argument("script_args", nargs=argparse.REMAINDER, metavar="...",
                      help="the script's own arguments")
    what.add_argument("--model", help="a zoo model (see mnistlab models)")
    what.add_argument("--model-arg", action="append", type=parse_model_arg, default=[],
                      metavar="NAME=VALUE", help="a zoo model argument (repeatable)")
    what.add_argument("--checkpoint", metavar="PATH",
                      help="a trained checkpoint or run directory (skips the from-scratch checks)")
    script = p.add_argument_group("running a script")
    script.add_argument("--steps", type=int, default=None,
                        help=f"stop after this many optimizer steps (default {DEFAULT_STEPS}; "
                             "the epoch is then cut short so the script's own evaluation runs)")
    script.add_argument("--seconds", type=float, default=None,
                        help=f"or after this many seconds of training (default "
                             f"{DEFAULT_SECONDS:g})")
    script.add_argument("--no-stand-ins", dest="stand_ins", action="store_false",
                        help="do not stand in for torchvision / Keras when they are not "
                             "installed (by default MNIST loaders are served offline by "
                             "mnistlab's data)")
    script.add_argument("--quiet", action="store_true",
                        help="do not show the script's own output (it goes to stderr)")
    how = p.add_argument_group("how you train it (with a model, not a script)")
    how.add_argument("--weights", metavar="PATH",
                     help="with FILE.py:NAME: load this state_dict (a plain torch.save of "
                          "model.state_dict()) and examine the trained model")
    how.add_argument("--loss", choices=LOSS_NAMES, default=None,
                     help="(default cross_entropy)")
    how.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                     help=f"(default {train_defaults.optimizer})")
    how.add_argument("--lr", type=float, default=None,
                     help="learning rate (default: --model and --checkpoint as mnistlab train "
                          f"resolves it; your own file: {ASSUMED_LR:g}, assumed, and the "
                          "report says so)")
    how.add_argument("--momentum", type=float, default=None,
                     help=f"for sgd (default {train_defaults.momentum:g})")
    how.add_argument("--weight-decay", type=float, default=None,
                     help=f"(default {train_defaults.weight_decay:g} for --model, as mnistlab "
                          "train; 0 for your own file)")
    how.add_argument("--schedule", choices=SCHEDULES, default=None,
                     help="onecycle starts at lr/10 (default: onecycle for --model, as mnistlab "
                          "train; none for your own file)")
    how.add_argument("--batch-size", type=int, default=None,
                     help="(default: as mnistlab train resolves it)")
    how.add_argument("--epochs", type=int, default=None,
                     help="(default: as mnistlab train resolves it; with --checkpoint: not "
                          "checked unless given)")
    how.add_argument("--val-size", type=int, default=None,
                     help=f"training images held out for validation, so one epoch is the "
                          f"rest (default {train_defaults.val_size:,}, as mnistlab train: "
                          "55,000 MNIST images an epoch; the run's for --checkpoint)")
    how.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                     help="inputs standardised with the data set's mean and std (--no-normalize:"
                          " pixels scaled to [0, 1] only, as ToTensor() does; default on)")
    how.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=None,
                     help="training batches reshuffled every epoch (default on)")
    how.add_argument("--train-on-test", action="store_true",
                     help="the test split is part of your training data")
    how.add_argument("--select-on-test", action="store_true",
                     help="you choose the best epoch or settings by test accuracy")
    how.add_argument("--eval", metavar="FILE.py:FUNC", dest="eval_fn",
                     help="your evaluation function eval(model, x) -> logits, checked for "
                          "training mode")
    how.add_argument("--seed", type=int, default=None, help="(default 0)")
    add_data(p)
    add_device(p)
    add_threads(p, "runs the doctor's probes")
    add_json(p)


def is_script(target: str | None) -> bool:
    """A path to a .py file with no `:NAME`: a training script to run."""
    return bool(target) and ":" not in str(target) and str(target).endswith(".py")


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> list[str]:
    return [f"--{n.replace('_', '-')}" for n in names
            if getattr(args, n, None) not in (None, [], False)]


def run(args: argparse.Namespace) -> int:
    from mnistlab.train.threads import check_forced

    check_forced(args.threads)
    if is_script(args.target):
        return run_script(args)
    if args.script_args:
        # Not a script: what followed the target are the doctor's own options (the parser
        # handed them over whole, as a script's arguments would be).
        target, rest = args.target, args.script_args
        args.doctor_parser.parse_args(rest, namespace=args)
        if args.target not in (None, target) or args.script_args:
            raise MnistlabError(f"unexpected arguments after {target}: {' '.join(rest)} "
                                "(only a training script takes its own arguments)")
        args.target = target
    refused = _given(args, SCRIPT_OPTIONS) + ([] if args.stand_ins else ["--no-stand-ins"]) \
        + (["--quiet"] if args.quiet else [])
    if refused:
        raise MnistlabError(f"{', '.join(refused)}: only for running a training script "
                            "(mnistlab doctor train.py)")
    return run_model(args)


def run_script(args: argparse.Namespace) -> int:
    refused = _given(args, MODEL_OPTIONS) + _given(args, ("train_on_test", "select_on_test"))
    if args.model_arg:
        refused.append("--model-arg")
    if refused:
        raise MnistlabError(f"{', '.join(refused)}: not for a training script, which says "
                            "itself how it trains (give the doctor's options before the "
                            "script's path, the script's after it)")
    from mnistlab.doctor.script import run_script as run_watched
    from mnistlab.doctor.script_checks import diagnose

    if args.threads is not None:  # the script starts with it (and may set its own)
        to_stderr(probe_threads(None, None, args.threads, "cpu").describe())
    # The script sets its own threads, as it would alone; the count it started with is put
    # back after it, and the doctor's probes on its model then get their own (measured).
    run = run_watched(args.target, args.script_args, steps=args.steps or DEFAULT_STEPS,
                      seconds=args.seconds or DEFAULT_SECONDS, stand_ins=args.stand_ins,
                      output=sys.stderr, quiet=args.quiet)
    if args.threads is None:
        w = run.watch
        model = w.trained_model()
        snapshot = w.snapshots.get(id(model)) if model is not None else None
        x = w.captured[0][0] if w.captured else None
        # where the script put its model (a GPU: nothing to measure)
        device = next((q.device for q in snapshot.parameters()), "cpu") if snapshot else "cpu"
        to_stderr(probe_threads(snapshot, x, None, device).describe())
    report = diagnose(run)
    if args.json:
        print_json(report.to_dict())
    else:
        print(report.format())
    return report.exit_code


def probe_threads(model, x, forced: int | None, device):
    """The thread count for the doctor's own probes (a few dozen training steps of small
    batches: the learning-rate probe trains up to MAX_RUNS copies LR_STEPS steps each),
    timed on a training step of a copy of `model` on `x` where that work is long enough to
    repay measuring (threads.choose_for_inference), else one thread. Not said here."""
    import copy

    import torch

    from mnistlab.doctor.examine import LR_BATCH, LR_STEPS
    from mnistlab.doctor.probe import MAX_RUNS
    from mnistlab.train.threads import choose_for_inference, fixed

    kind = torch.device(str(device)).type
    if forced is not None or kind != "cpu":
        return choose_for_inference(lambda: None, steps=None, forced=forced, device=device)
    if model is None or x is None:  # no model to probe: a few small forward passes remain
        return fixed(1, "no model to time: the doctor's checks are a few small forward "
                        "passes, and one thread cannot collapse")
    try:
        net = copy.deepcopy(model).train()
        x = x[:LR_BATCH].float()
        with torch.no_grad():
            try:
                net(x[:2])
            except Exception:  # the doctor's probes try a flattened input next, as here
                x = x.flatten(1)
                net(x[:2])

        def step() -> None:
            net.zero_grad(set_to_none=True)
            net(x).float().sum().backward()

        return choose_for_inference(step, steps=MAX_RUNS * LR_STEPS, forced=None,
                                    device=device, after="fixed for the doctor's probes")
    except Exception as e:  # the user's model: its failure is the report's to explain
        return fixed(1, f"a step of the model could not be timed ({type(e).__name__}): one "
                        "thread, which cannot collapse")


def doctor_config(args: argparse.Namespace, state: dict | None = None):
    """The TrainConfig the doctor examines: for --model, exactly what `mnistlab train` with
    the same options resolves (the same `resolve_config`); for a checkpoint, its run's
    settings under the command line's; for your own file, the plain setup its author most
    likely wrote (no schedule, no weight decay, lr ASSUMED_LR unless given)."""
    from mnistlab.train.config import TrainConfig, resolve_config

    explicit = dict(optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
                    weight_decay=args.weight_decay, schedule=args.schedule,
                    batch_size=args.batch_size, epochs=args.epochs, val_size=args.val_size,
                    seed=args.seed, device=args.device, dataset=args.dataset,
                    data_dir=args.data_dir)
    if state is not None:  # the run's own settings, under what the command line gives
        ran = TrainConfig.from_dict(state.get("config") or {})
        given = {k: v for k, v in explicit.items()
                 if v is not None and k not in ("dataset", "data_dir")}
        config = dataclasses.replace(ran, **given)
        config.validate()
        return config
    if args.model:
        model_args = dict(args.model_arg)
        return resolve_config(model=args.model, model_args=model_args or None, **explicit)
    plain = {"nesterov": False, "weight_decay": 0.0, "schedule": "none", "lr": ASSUMED_LR}
    return resolve_config(**{**plain, **{k: v for k, v in explicit.items() if v is not None}})


def _load_weights(model, path: str):
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise MnistlabError(f"--weights {path}: no such file") from None
    except Exception as e:  # a file torch cannot read
        raise MnistlabError(f"--weights {path}: cannot be read as a state_dict "
                            f"({type(e).__name__})") from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise MnistlabError(f"--weights {path}: holds a {type(state).__name__}, not a "
                            "state_dict")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise MnistlabError(f"--weights {path}: does not fit the model: "
                            f"{' '.join(first[:2])[:300]}") from None
    return model


def _plain_state_dict_hint(path: str) -> str | None:
    """For a file that is a plain state_dict, how to examine it."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not readable either way: no hint
        return None
    if isinstance(state, dict) and state and all(isinstance(v, torch.Tensor)
                                                 for v in state.values()):
        return (f"{path}: a plain state_dict ({len(state)} tensors), not an mnistlab "
                "checkpoint; examine it with the model class it belongs to: mnistlab doctor "
                f"FILE.py:Net --weights {path}")
    return None


def _build_model(args: argparse.Namespace):
    """(model, name, trained, checkpoint state or None) from exactly one of FILE:NAME, --model,
    --checkpoint."""
    given = [x for x in (args.target, args.model, args.checkpoint) if x]
    if len(given) != 1:
        raise MnistlabError("give exactly one of SCRIPT.py, FILE.py:NAME, --model NAME or "
                            "--checkpoint PATH" + (f" (got {len(given)})" if given else ""))
    if args.weights and not args.target:
        raise MnistlabError("--weights: only with FILE.py:NAME (the model class the weights "
                            "belong to)")
    if args.checkpoint:
        from mnistlab.checkpoint import load_model

        try:
            model, _, state = load_model(args.checkpoint, "cpu")
        except MnistlabError as e:
            hint = _plain_state_dict_hint(args.checkpoint) if "not an mnistlab checkpoint" in \
                str(e) else None
            if hint:
                raise MnistlabError(hint) from None
            raise
        return model, f"checkpoint {state['path']} ({state['model']['name']})", True, state
    if args.model:
        from mnistlab.models import create_model

        model = create_model(args.model, **dict(args.model_arg))
        return model, f"{args.model} {dict(args.model_arg) or ''}".strip(), False, None
    from mnistlab.doctor.loading import load_user_model

    model = load_user_model(args.target)
    if args.weights:
        return _load_weights(model, args.weights), f"{args.target} + {args.weights}", True, None
    return model, args.target, False, None


def run_model(args: argparse.Namespace) -> int:
    import torch

    from mnistlab.checkpoint import checkpoint_dataset
    from mnistlab.data.dataset import load_dataset
    from mnistlab.device import resolve_device
    from mnistlab.doctor import examine_config

    seed = 0 if args.seed is None else args.seed
    torch.manual_seed(seed)  # the same random init, hence the same report, every run
    model, name, trained, state = _build_model(args)
    config = doctor_config(args, state)
    if state is not None:
        data = checkpoint_dataset(state, args.dataset, args.data_dir, args.download)
    else:
        data = load_dataset(config.dataset, config.data_dir, args.download)
    own = not args.model and state is None
    if own and args.val_size is None and config.val_size * 2 > len(data.train_labels):
        # a data set too small for mnistlab train's hold-out (a test's synthetic one): all of
        # it is the training split
        config = dataclasses.replace(config, val_size=0)
    eval_fn = None
    if args.eval_fn:
        from mnistlab.doctor.loading import load_attribute

        eval_fn = load_attribute(args.eval_fn)
        if not callable(eval_fn):
            raise MnistlabError(f"--eval {args.eval_fn}: is not a function")
    assumed = own and args.lr is None
    x = data.train_images[:64].unsqueeze(1).float() / 255.0
    to_stderr(probe_threads(model, x, args.threads, resolve_device(args.device)).describe())
    report = examine_config(
        config, data=data, model=model, subject=name, loss_fn=args.loss or "cross_entropy",
        normalize=args.normalize is not False, shuffle=args.shuffle is not False,
        trains_on_test=args.train_on_test, selects_on_test=args.select_on_test,
        eval_fn=eval_fn, trained=trained,
        # A trained model's update count is checked only when asked (--epochs).
        epochs=None if trained and args.epochs is None else config.epochs)
    if assumed:
        report.subject = report.subject.replace(
            f"lr {config.lr:g}", f"lr {config.lr:g} (assumed: no --lr given)", 1)
        if report.measurements.get("lr_probe"):
            report.measurements["lr_probe"]["assumed"] = True
    if args.json:
        print_json(report.to_dict())
    else:
        print(report.format())
    return report.exit_code
