"""`examine(model, ...)`: run every check on a copy of the model and a few real batches.

The model passed in is never modified: every probe works on a deep copy. Data comes from the
user's own batches when given (so their input scaling and label form are what is checked),
else from a few images of the real data set, prepared the way the user says they prepare
theirs (`normalize`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mnistlab.data.dataset import DigitData, load_dataset
from mnistlab.data.pipeline import Normalizer
from mnistlab.device import resolve_device
from mnistlab.doctor import evalmode, init, output, setup
from mnistlab.doctor.findings import Finding, Report
from mnistlab.doctor.losses import Loss, resolve_loss
from mnistlab.doctor.probe import OptimizerFactory, default_optimizer, lr_probe, short_run
from mnistlab.errors import MnistlabError

PROBE_BATCH = 64  # images for the traced forward/backward and the output checks
LR_BATCH, LR_BATCHES, LR_STEPS = 32, 4, 8  # the learning-rate probe's training steps
COMPARE_STEPS = 20  # as-is vs re-initialised, when the initialisation is in question


@dataclass
class ProbeData:
    x: torch.Tensor  # (N, ...) float, as the model receives it
    y: torch.Tensor  # int64 class indices (converted from the user's form if need be)
    raw_labels: torch.Tensor | None  # the user's labels as given, for the label check
    description: str


def _index_labels(y: torch.Tensor, classes: int) -> torch.Tensor:
    """Best-effort class indices from whatever form the user's labels take."""
    if y.dim() > 1:
        y = y.reshape(len(y), -1)
        y = y[:, 0] if y.shape[1] == 1 else y.argmax(1)
    return y.long().clamp(0, classes - 1)


def _real_batch(data: DigitData, n: int, normalize: bool, seed: int) -> ProbeData:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data.train_labels), generator=g)[:n]
    images = data.train_images[idx]
    if normalize:
        x = Normalizer.fit(data.train_images[:10000])(images)
        how = "standardised"
    else:
        x = images.unsqueeze(1).float() / 255.0
        how = "scaled to [0, 1], not standardised"
    return ProbeData(x, data.train_labels[idx], None,
                     f"{n} random {data.name} training images, {how}")


def _user_batches(batches: Sequence[tuple[torch.Tensor, torch.Tensor]], classes: int,
                  n: int) -> ProbeData:
    try:
        x = torch.cat([b[0] for b in batches])[:n]
        y = torch.cat([b[1] for b in batches])[:n]
    except (TypeError, IndexError, RuntimeError) as e:
        raise MnistlabError(f"batches: expected a list of (inputs, labels) tensors ({e})"
                            ) from None
    if len(x) < 8:
        raise MnistlabError(f"batches: need at least 8 images, got {len(x)}")
    return ProbeData(x.float(), _index_labels(y, classes), y, f"{len(x)} images of your batches")


def _adapt_input(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, Any, str | None]:
    """The input layout the model accepts: (B, 1, 28, 28), else flattened (B, 784); and the
    output of a forward pass on two images, or what went wrong."""
    errors = []
    for candidate in (x, x.flatten(1)):
        try:
            with torch.no_grad():
                model.eval()
                out = model(candidate[:2])
            return candidate, out, None
        except Exception as e:  # the user's forward: any failure is information
            errors.append(f"{tuple(candidate.shape[1:])}: {type(e).__name__}: "
                          f"{str(e).strip().splitlines()[0][:160] if str(e).strip() else ''}")
    return x, None, "; ".join(errors)


def examine(model: nn.Module, *, loss_fn: Any = "cross_entropy",
            optimizer_factory: OptimizerFactory | None = None, optimizer_name: str | None = None,
            lr: float = 0.01, warmup_lr: float | None = None, batch_size: int = 128,
            epochs: int | None = None,
            train_size: int | None = None,
            batches: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None,
            data: DigitData | None = None, dataset: str = "mnist", data_dir: str | None = None,
            download: bool = True, normalize: bool = True, shuffle: bool = True,
            train_labels: torch.Tensor | None = None, trains_on_test: bool = False,
            selects_on_test: bool = False, train_images: torch.Tensor | None = None,
            test_images: torch.Tensor | None = None, eval_fn: evalmode.EvalFn | None = None,
            trained: bool = False, classes: int = 10, device: str | torch.device = "cpu",
            probe_lr: bool = True, seed: int = 0, subject: str | None = None) -> Report:
    """Examine a model and its training setup; return a Report of findings and measurements.

    model: any nn.Module mapping images to `classes` outputs (left untouched).
    loss_fn: "cross_entropy" | "nll" | "mse", or any callable/nn.Module loss(output, labels).
    optimizer_factory: (params, lr) -> optimizer; default SGD with momentum 0.9.
    lr, batch_size, epochs, train_size: the training plan (train_size: the data's, else 60,000);
        warmup_lr: the rate of the first steps when a schedule warms up to `lr`.
    batches: your own (inputs, labels) batches, as your training loop feeds them; else a few
        real images of `dataset` (or `data`), standardised when `normalize`.
    shuffle, train_labels: whether batches are reshuffled, and the training labels in the
        order your loop reads them (default: the data set's file order).
    trains_on_test, selects_on_test: whether the test split feeds training or selection;
    train_images, test_images: the images you train on and test on, checked for overlap.
    eval_fn: your evaluation routine, eval_fn(model, x) -> logits; checked for training mode.
    trained: the model is a trained checkpoint: skip the initialisation and lr checks.
    """
    start = time.perf_counter()
    dev = resolve_device(str(device)) if not isinstance(device, torch.device) else device
    loss = resolve_loss(loss_fn)
    factory = optimizer_factory or default_optimizer
    opt_name = optimizer_name or ("SGD(momentum=0.9)" if optimizer_factory is None
                                  else getattr(optimizer_factory, "__name__", "your optimizer"))
    n_needed = PROBE_BATCH + LR_BATCH * LR_BATCHES
    if batches is not None:
        probe = _user_batches(batches, classes, n_needed)
    else:
        if data is None:
            data = load_dataset(dataset, data_dir, download)
        probe = _real_batch(data, n_needed, normalize, seed)
    if train_size is None:
        train_size = len(data.train_labels) if data is not None else 60000
    if train_labels is None and data is not None:
        train_labels = data.train_labels

    net = copy.deepcopy(model).to(dev)
    x_all, out, error = _adapt_input(net, probe.x.to(dev))
    y_all = probe.y.to(dev)
    name = subject or f"{type(model).__name__} ({sum(p.numel() for p in model.parameters()):,} " \
                      "parameters)"
    lr_text = f"lr {lr:g}" + (f" (from {warmup_lr:g})" if warmup_lr is not None else "")
    subject_line = (f"{name}; loss {loss.name}; {opt_name}, {lr_text}; batch {batch_size}"
                    + (f"; {epochs} epochs" if epochs else ""))
    report = Report(subject_line)
    m = report.measurements
    m["data"] = probe.description + f", fed as {tuple(x_all.shape[1:])}"
    m["loss"], m["classes"] = loss.name, classes
    if error is not None:
        report.add(Finding(
            "forward-fails", "error", "the model cannot run on a batch of images",
            {"tried": error},
            "Every check needs a forward pass on (B, 1, 28, 28) or flattened (B, 784) images.",
            "make forward() accept (B, 1, 28, 28) float images, e.g. x = x.flatten(1) first"))
        return _finish(report, start)

    x, y = x_all[:PROBE_BATCH], y_all[:PROBE_BATCH]
    # The probe's training batches: images after the checked batch, or (few images given)
    # the same ones again.
    rest = slice(PROBE_BATCH, None) if len(x_all) >= PROBE_BATCH + LR_BATCH else slice(None)
    lr_x, lr_y = x_all[rest], y_all[rest]
    lr_batches = [(lr_x[i: i + LR_BATCH], lr_y[i: i + LR_BATCH])
                  for i in range(0, min(len(lr_x), LR_BATCH * LR_BATCHES), LR_BATCH)]
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] != classes:
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        report.add(Finding(
            "output-shape", "error",
            f"the output has shape {shape}; a {classes}-class classifier needs "
            f"(B, {classes})",
            {"output_shape": shape, "input_shape": list(x.shape)},
            "The loss and every accuracy computation read one score per class per image.",
            f"end forward() with a layer of {classes} outputs, e.g. nn.Linear(hidden, "
            f"{classes}), and flatten before it"))
        return _finish(report, start)

    before = init.measure(copy.deepcopy(net), (x, y), loss, seed)
    out = before.output
    form = output.output_form(out)
    behaviour = evalmode.eval_behaviour(copy.deepcopy(net), x, y if trained else None)
    m["output"] = {"form": form.form, "shape": list(out.shape), "produced_by": before.last_op}
    if before.normalisation is not None:
        m["output"]["normalised_by"] = before.normalisation.call
        m["output"]["normalised_input_fed_by"] = before.normalisation.producer
    found = output.check_output(form, loss, before.loss, before.last_op,
                                behaviour.batch_dependence, classes)
    if not any(f.name == "softmax-over-batch" for f in found):
        found += output.check_normalised_input(before.normalisation, before.loss, classes)
    report.add(*found, *evalmode.check_eval_randomness(behaviour))

    if not trained:
        plan = Plan(net, (x, y), lr_batches, loss, factory, opt_name, lr, warmup_lr, classes,
                    seed)
        _from_scratch(report, plan, before, form.form, probe_lr)

    if epochs is not None:
        m["updates"], found = setup.check_updates(epochs, batch_size, train_size)
        report.add(*found)
    m["inputs"], found = setup.check_inputs(probe.x)
    report.add(*found)
    if probe.raw_labels is not None:
        report.add(*setup.check_labels(probe.raw_labels[:PROBE_BATCH].to(dev), loss, classes,
                                       output=out.to(dev)))
    if train_labels is not None:
        report.add(*setup.check_order(train_labels, shuffle, batch_size))
    overlap = None
    if train_images is not None and test_images is not None:
        overlap = setup.count_overlap(train_images, test_images)
    report.add(*setup.check_test_split(trains_on_test, selects_on_test, overlap,
                                       None if test_images is None else len(test_images)))

    if eval_fn is not None:
        report.add(*evalmode.check_eval_fn(net, eval_fn, x, y))
    elif trained and "dropout-ignores-eval" not in report.names:  # that one says more
        report.add(*evalmode.check_mode_gap(net, x, y))
    return _finish(report, start)


@dataclass
class Plan:
    """The model copy, the data and the training plan that the from-scratch checks share."""

    net: nn.Module
    batch: tuple[torch.Tensor, torch.Tensor]  # the fixed batch every measurement uses
    train_batches: list[tuple[torch.Tensor, torch.Tensor]]
    loss: Loss
    factory: OptimizerFactory
    optimizer_name: str
    lr: float
    warmup_lr: float | None
    classes: int
    seed: int


def _from_scratch(report: Report, plan: Plan, before: init.InitStats, form: str,
                  probe_lr: bool) -> None:
    """Checks 4 and 5: the starting point, with a re-initialised copy when it is in question,
    then the learning-rate probe."""
    m = report.measurements
    m.update(initial_loss=before.loss, expected_initial_loss=init.expected_loss(
        plan.loss, form, plan.classes), logits_std=before.logits_std)
    m["layers"] = [la.to_dict() for la in before.layers]
    findings = init.check_init(before, None, form, plan.loss, plan.classes, None)
    if findings:  # show what the recommended fix does, on a copy
        fresh = init.reinitialised(plan.net, before.layers)
        after = init.measure(copy.deepcopy(fresh), plan.batch, plan.loss, plan.seed)
        first_lr = plan.warmup_lr or plan.lr
        as_is, redone = (short_run(net, plan.train_batches, plan.batch, plan.loss, plan.factory,
                                   first_lr, COMPARE_STEPS) for net in (plan.net, fresh))
        runs = {"steps": COMPARE_STEPS, "lr": first_lr, "as_is": [as_is.start, as_is.end],
                "reinitialised": [redone.start, redone.end]}
        findings = init.check_init(before, after, form, plan.loss, plan.classes, runs)
    report.add(*findings)
    if probe_lr:
        lr_m, lr_findings = lr_probe(plan.net, plan.train_batches, plan.batch, plan.loss,
                                     plan.factory, plan.lr, LR_STEPS, plan.optimizer_name,
                                     plan.warmup_lr)
        m["lr_probe"] = lr_m
        # With the model itself broken, the probe measures the breakage, not the rate.
        lr_m["confounded"] = bool(report.errors)
        if not report.errors:
            report.add(*lr_findings)


def _finish(report: Report, start: float) -> Report:
    report.seconds = time.perf_counter() - start
    return report
