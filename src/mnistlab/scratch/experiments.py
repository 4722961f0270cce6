"""Reproduce the numbers in docs/scratch.md on real MNIST.

    python -m mnistlab.scratch.experiments [--data FOLDER] [--only NAME ...]

Experiments (each prints a Markdown table):
  recipe      the default recipe (DEFAULT_RECIPE): test accuracy and time
  softmax     mistake 1: an extra element-wise softmax derivative p * (1 - p) in the
              softmax-cross-entropy gradient: gradient check, then training with it
  batch       mistake 2: the whole training set as one batch (10 epochs = 10 updates)
              against one example per update (10 epochs = 550,000 updates)
  init        the four initialisations on the default network and on a deep one
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mnistlab.errors import MnistlabError
from mnistlab.scratch.data import Splits, load_splits
from mnistlab.scratch.gradcheck import check_gradients
from mnistlab.scratch.init import INITS
from mnistlab.scratch.losses import LossFn, softmax, softmax_cross_entropy
from mnistlab.scratch.network import MLP
from mnistlab.scratch.train import DEFAULT_RECIPE, evaluate, fit

Row = dict[str, Any]


def softmax_ce_extra_derivative(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """THE MISTAKE: the right loss value, but the gradient multiplied once more by p * (1 - p)."""
    loss, grad = softmax_cross_entropy(logits, labels)  # grad = (p - onehot) / B, correct
    p = softmax(logits)  # (B, C)
    return loss, grad * p * (1 - p)  # wrong: the softmax is already differentiated in grad


def _train(
    data: Splits, arch: dict[str, Any], seed: int = 0, loss_fn: LossFn = softmax_cross_entropy,
    **train: Any,
) -> Row:
    """Build, train and test one network; returns its scores and timings."""
    net = MLP(**arch, seed=seed)
    settings = {**DEFAULT_RECIPE["train"], **train}
    start = time.perf_counter()
    with np.errstate(over="ignore", invalid="ignore"):  # diverging runs are part of the story
        history = fit(net, data.x_train, data.y_train, data.x_val, data.y_val, seed=seed,
                      loss_fn=loss_fn, **settings)
        _, test_acc = evaluate(net, data.x_test, data.y_test)
    return {
        "val_acc_by_epoch": [h["val_acc"] for h in history],
        "val_acc": history[-1]["val_acc"],
        "test_acc": test_acc,
        "train_loss": history[-1]["train_loss"],
        "epochs_run": len(history),
        "diverged": not np.isfinite(history[-1]["train_loss"]),
        "seconds": time.perf_counter() - start,
        "updates": len(history) * (len(data.x_train) if settings.get("per_sample") else
                                   -(-len(data.x_train) // settings["batch_size"])),
    }


def _pct(x: float | None) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{100 * x:.2f}%"


def _final(r: Row) -> str:
    """Final validation accuracy, or where the loss became NaN and training stopped."""
    return f"loss NaN, stopped in epoch {r['epochs_run']}" if r["diverged"] else _pct(r["val_acc"])


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def run_recipe(data: Splits) -> str:
    rows = []
    for seed in (0, 1, 2):
        r = _train(data, DEFAULT_RECIPE["arch"], seed)
        rows.append((seed, _pct(r["val_acc"]), _pct(r["test_acc"]), f"{r['seconds']:.1f} s"))
    return _table(("seed", "val acc", "test acc", "train + eval time"), rows)


def run_softmax(data: Splits, epochs: int = DEFAULT_RECIPE["train"]["epochs"]) -> str:
    # Gradient check on a small float64 network: only the gradient formula differs.
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 12)), rng.integers(0, 3, 16)
    checks = []
    for name, loss_fn in (("correct", softmax_cross_entropy),
                          ("extra p*(1-p)", softmax_ce_extra_derivative)):
        errors = check_gradients(MLP((12, 7, 5, 3), dtype=np.float64, seed=0), x, y, loss_fn)
        checks.append((name, *(f"{e:.1e}" for e in errors.values())))
    names = MLP((12, 7, 5, 3)).param_names()
    out = ["Gradient check, 12-7-5-3 ReLU, float64, relative error per parameter:", "",
           _table(("gradient", *names), checks), "",
           f"Training, default recipe ({epochs} epochs):", ""]
    rows = []
    for name, loss_fn in (("correct", softmax_cross_entropy),
                          ("extra p*(1-p)", softmax_ce_extra_derivative)):
        r = _train(data, DEFAULT_RECIPE["arch"], loss_fn=loss_fn, epochs=epochs)
        by_epoch = r["val_acc_by_epoch"]
        rows.append((name, _pct(by_epoch[0]), _pct(by_epoch[min(2, len(by_epoch) - 1)]),
                     _pct(r["val_acc"]), _pct(r["test_acc"]), f"{r['train_loss']:.3f}"))
    out.append(_table(("gradient", "val acc ep 1", "val acc ep 3", "val acc final", "test acc",
                       "final train loss"), rows))
    return "\n".join(out)


def run_batch(data: Splits, per_sample_epochs: int = 10) -> str:
    n = len(data.x_train)
    runs = [
        ("whole set as one batch", {"epochs": 10, "batch_size": n}),
        ("whole set as one batch, lr x10", {"epochs": 10, "batch_size": n, "lr": 0.5}),
        ("one example per update (per_sample)",
         {"epochs": per_sample_epochs, "per_sample": True, "lr": 0.01, "momentum": 0.0}),
        ("mini-batches of 64 (default)", {"epochs": 10}),
    ]
    rows = []
    for name, train in runs:
        r = _train(data, DEFAULT_RECIPE["arch"], **train)
        lr = train.get("lr", DEFAULT_RECIPE["train"]["lr"])
        mom = train.get("momentum", DEFAULT_RECIPE["train"]["momentum"])
        rows.append((name, r["epochs_run"], f"{r['updates']:,}", f"{lr} / {mom}",
                     _pct(r["val_acc_by_epoch"][0]), _final(r), _pct(r["test_acc"]),
                     f"{r['seconds']:.1f} s"))
    return _table(("training", "epochs", "updates", "lr / momentum", "val acc ep 1",
                   "val acc final", "test acc", "time"), rows)


def run_init(data: Splits, epochs: int = 3) -> str:
    rows = []
    deep = (784, 256, 256, 256, 256, 256, 10)
    for sizes in (DEFAULT_RECIPE["arch"]["sizes"], deep):
        for init in INITS:
            arch = {"sizes": sizes, "activation": "relu", "init": init}
            with np.errstate(over="ignore", invalid="ignore"):
                start_loss, _ = evaluate(MLP(**arch), data.x_val, data.y_val)
            r = _train(data, arch, epochs=epochs)
            rows.append(("-".join(map(str, sizes)), init, f"{start_loss:.3g}",
                         _pct(r["val_acc_by_epoch"][0]), _final(r)))
    return _table(("network (ReLU)", "init", "val loss before training", "val acc ep 1",
                   f"val acc ep {epochs}"), rows)


EXPERIMENTS: dict[str, Callable[..., str]] = {
    "recipe": run_recipe,
    "softmax": run_softmax,
    "batch": run_batch,
    "init": run_init,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None,
                        help="folder with the MNIST files (default: $MNISTLAB_DATA, the cache)")
    parser.add_argument("--download", action="store_true", help="download MNIST if missing")
    parser.add_argument("--only", nargs="*", choices=sorted(EXPERIMENTS), default=None,
                        help="run only these experiments")
    parser.add_argument("--per-sample-epochs", type=int, default=10,
                        help="epochs of one-example-per-update training in 'batch' (10 ~ 2 min)")
    args = parser.parse_args(argv)
    try:
        data = load_splits("mnist", args.data, download=args.download)
    except MnistlabError as e:
        print(f"mnistlab: error: {e}", file=sys.stderr)
        return e.exit_code
    print(f"MNIST: {len(data.x_train)} train / {len(data.x_val)} val / {len(data.x_test)} test, "
          f"numpy {np.__version__}, {os.cpu_count()} CPUs\n", flush=True)
    for name in args.only or EXPERIMENTS:
        kwargs = {"per_sample_epochs": args.per_sample_epochs} if name == "batch" else {}
        print(f"## {name}\n\n{EXPERIMENTS[name](data, **kwargs)}\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
