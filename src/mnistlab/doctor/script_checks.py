"""From what the watch saw while a script trained to findings: gradients, modes, data, the
learning rate, memory; then today's model probes (`examine`) on the model the script built,
from the weights it started with, with the script's own loss, optimizer, rate and batches.

Every check reads behaviour the hooks recorded, never the source; fixes use the script's own
variable names where the watch could see them (`optimizer.zero_grad()`).
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from mnistlab.doctor.findings import Finding, Report
from mnistlab.doctor.setup import UPDATES_ERROR, UPDATES_WARN
from mnistlab.doctor.watch import Call, Watch, fingerprints, optimizer_factory

if TYPE_CHECKING:
    from mnistlab.doctor.script import ScriptRun

LOSS_KINDS = {"cross_entropy": "cross_entropy", "nll_loss": "nll", "mse_loss": "mse"}
MIN_PASS = 32  # images an evaluation pass needs before its overlap counts
OVERLAP = 0.05  # of an evaluation pass's images seen in training: not a held-out set
# examine()'s findings that the script run itself judges better (see _merge_probe)
RUN_JUDGED = {"lr-diverges", "lr-too-small"}


@dataclass
class Names:
    model: str = "model"
    optimizer: str = "optimizer"
    loss: str = "loss"
    criterion: str = "F.cross_entropy"

    @classmethod
    def of(cls, watch: Watch) -> Names:
        n = watch.names
        return cls(n.get("model", "model"), n.get("optimizer", "optimizer"),
                   n.get("loss", "loss"), n.get("criterion", "F.cross_entropy"))


@dataclass
class Pass:
    """Consecutive evaluation calls: one evaluation of a data set."""

    calls: list[Call]
    followed_by_training: bool = False

    @property
    def images(self) -> int:
        return sum(c.batch for c in self.calls)

    def keys(self, standard: bool = False) -> torch.Tensor | None:
        keys = [c.std_keys if standard else c.keys for c in self.calls]
        keys = [k for k in keys if k is not None]
        return torch.cat(keys) if keys else None


def _key_set(keys: torch.Tensor | None) -> set[tuple[int, ...]]:
    return set() if keys is None else {tuple(k) for k in keys.tolist()}


# ---- the run's shape -------------------------------------------------------------------------
def split_calls(watch: Watch, model_id: int | None) -> tuple[list[Call], list[Pass]]:
    """The model's training calls (their output reached backward) and evaluation passes."""
    calls = [c for c in watch.calls if c.module_id == model_id]
    train: list[Call] = []
    passes: list[Pass] = []
    current: Pass | None = None
    for i, c in enumerate(calls):
        last = i == len(calls) - 1
        if c.backward or (last and c.grad and watch.stopped_by):
            train.append(c)
            if current is not None:
                current.followed_by_training = True
                current = None
            elif passes and not passes[-1].followed_by_training and train:
                pass
        else:
            if current is None:
                current = Pass([])
                passes.append(current)
            current.calls.append(c)
    for p in passes:  # a later pass separated only by training counts as followed
        after = [c for c in train if c.index > p.calls[-1].index]
        p.followed_by_training = bool(after)
    return train, passes


def _mode_sensitive(model: nn.Module, snapshot: nn.Module | None,
                    x: torch.Tensor | None) -> list[str]:
    """The modules that behave differently in train and eval mode (Dropout, BatchNorm...);
    or, with none, ['forward()'] when the output measurably depends on the mode."""
    found = [f"{name} ({type(m).__name__})" for name, m in model.named_modules()
             if isinstance(m, nn.modules.dropout._DropoutNd | nn.modules.batchnorm._NormBase)]
    if found or snapshot is None or x is None:
        return found
    from mnistlab.doctor.evalmode import _mode_dependent

    try:
        import copy

        return ["forward()"] if _mode_dependent(copy.deepcopy(snapshot), x[:16]) > 1e-3 else []
    except Exception:  # the user's forward on a copy: no verdict
        return []


# ---- findings --------------------------------------------------------------------------------
def check_training_happens(run: ScriptRun, train: list[Call], names: Names) -> list[Finding]:
    w = run.watch
    if w.no_grad_backward:
        under = sum(1 for c in w.calls if not c.grad)
        return [Finding(
            "trains-under-no-grad", "error",
            f"{names.loss}.backward() was called on a loss computed with gradients switched "
            "off (torch.no_grad / inference_mode)",
            {"backward_calls_on_no_grad_loss": w.no_grad_backward,
             "model_calls_without_grad": under, "steps": w.steps,
             "script_error": run.error, "where": run.error_where},
            "Under no_grad nothing is recorded for backward: the loss has no graph, so "
            "backward fails (or, if the error is caught, no weight ever changes). no_grad "
            "belongs around evaluation only.",
            f"# training: no torch.no_grad() around the forward pass and the loss\n"
            f"out = {names.model}(x)\n{names.loss} = {names.criterion}(out, y)\n"
            f"{names.loss}.backward()\n"
            f"# evaluation only:\nwith torch.no_grad():\n    out = {names.model}(x_test)")]
    if w.steps and not w.backwards:
        return [Finding(
            "backward-never-called", "error",
            f"{names.optimizer}.step() ran {w.steps} times but backward() never ran",
            {"steps": w.steps, "backward_calls": 0, "training_calls": len(train)},
            "step() applies the gradients backward() computes. Without backward there are no "
            "gradients, so every step leaves the weights as they were: the loss never falls.",
            f"{names.optimizer}.zero_grad()\n{names.loss}.backward()      # note the "
            f"parentheses: {names.loss}.backward alone does nothing\n{names.optimizer}.step()")]
    if w.optimizers and w.backwards and not w.steps and not w.closure_steps and (
            run.ended != "error" and w.backwards >= 20):
        return [Finding(
            "step-never-called", "error",
            f"backward() ran {w.backwards} times but no optimizer ever stepped",
            {"backward_calls": w.backwards, "optimizers": len(w.optimizers)},
            "backward() only computes gradients; the optimizer's step() changes the weights.",
            f"{names.loss}.backward()\n{names.optimizer}.step()")]
    return []


def check_gradients(w: Watch, names: Names) -> list[Finding]:
    findings = []
    judged = w.stale_at_backward + w.clean_at_backward
    if w.optimizer_params_never_grad and w.optimizer_params_never_grad[0] and (
            w.optimizer_params_never_grad[1] == w.optimizer_params_never_grad[2]):
        judged = 0  # the optimizer holds nothing that is trained: its gradients say nothing
        w.stale_at_backward = w.zeroed_before_step = 0
    if w.stale_at_backward >= 3 and w.stale_at_backward >= 0.8 * judged:
        findings.append(Finding(
            "zero-grad-missing", "error",
            "gradients are never cleared: each backward() adds to the gradients of all "
            "earlier steps",
            {"steps": w.steps, "zero_grad_calls": w.zero_grads,
             "steps_starting_with_old_gradients": w.stale_at_backward,
             "steps_checked": judged},
            "PyTorch accumulates .grad across backward() calls on purpose (for gradient "
            "accumulation). Without zero_grad() the step after k batches follows the sum of "
            "all k gradients: an effective learning rate that grows every step, with a "
            "direction dominated by the first batches, so the loss stalls or blows up. "
            "(Accumulating on purpose means clearing after every step: that is not flagged.)",
            f"{names.optimizer}.zero_grad()      # every step, before {names.loss}.backward()\n"
            f"{names.loss}.backward()\n{names.optimizer}.step()"))
    if w.zeroed_before_step >= 3 and w.zeroed_before_step >= 0.8 * min(w.steps, 100):
        findings.append(Finding(
            "zero-grad-before-step", "error",
            f"the gradients are cleared between backward() and {names.optimizer}.step(): "
            "every step finds them zero",
            {"steps": w.steps, "steps_with_zero_gradients": w.zeroed_before_step,
             "zero_grad_calls": w.zero_grads},
            "zero_grad() wipes what backward() just computed, so step() has nothing to apply "
            "(only weight decay or momentum from nothing): the weights do not learn.",
            f"{names.optimizer}.zero_grad()\n{names.loss}.backward()\n"
            f"{names.optimizer}.step()           # zero_grad before backward, never between "
            "backward and step"))
    if w.grads_not_in_optimizer and w.grads_not_in_optimizer[0]:
        n, elements = w.grads_not_in_optimizer
        model = w.trained_model()
        total = sum(p.numel() for p in model.parameters() if p.requires_grad) if model else 0
        share = elements / max(total, 1)
        everything = bool(w.optimizer_params_never_grad and w.optimizer_params_never_grad[1]
                          == w.optimizer_params_never_grad[2])
        findings.append(Finding(
            "params-not-in-optimizer", "error" if share >= 0.5 else "warning",
            f"{n} parameter tensors ({elements:,} weights, {share:.0%} of the model) get "
            "gradients but are in no optimizer"
            + (": the optimizer holds another copy of the model" if everything else ""),
            {"parameters": n, "weights": elements, "model_weights": total,
             "optimizer_holds_only_unused_parameters": everything},
            "An optimizer only updates the parameters it was given. These receive gradients "
            "every step and never change; typically the optimizer was built before the model "
            "was re-created, or from one layer's parameters.",
            f"{names.optimizer} = torch.optim.SGD({names.model}.parameters(), lr=...)   # after "
            f"the final `{names.model} = ...`, from all of its parameters"))
    elif w.optimizer_params_never_grad and w.optimizer_params_never_grad[0]:
        n, elements, total = w.optimizer_params_never_grad
        findings.append(Finding(
            "params-without-gradients", "error" if elements == total else "note",
            f"{n} parameter tensors in the optimizer ({elements:,} of {total:,} weights) never "
            "get a gradient",
            {"parameters": n, "weights": elements, "optimizer_weights": total},
            "These weights do not take part in the loss (a layer defined but not used in "
            "forward(), or an optimizer built on a model that is not the one trained): they "
            "never change.",
            f"use the layer in forward(), or build {names.optimizer} on the model you train"))
    return findings


def check_modes(w: Watch, model: nn.Module, train: list[Call], passes: list[Pass],
                sensitive: list[str], names: Names) -> list[Finding]:
    if not sensitive:
        return []
    findings = []
    trained = _key_set(torch.cat([c.keys[:1] for c in train if c.keys is not None])
                       if any(c.keys is not None for c in train) else None)
    # Evaluation calls, less re-runs on the batch just trained on (training accuracy)
    eval_calls = [c for p in passes for c in p.calls if c.batch > 1 and not (
        c.keys is not None and tuple(c.keys[0].tolist()) in trained)]
    in_train = [c for c in eval_calls if c.training]
    if in_train:
        findings.append(Finding(
            "evaluates-in-train-mode", "warning",
            f"{len(in_train)} of {len(eval_calls)} evaluation calls ran with {names.model} in "
            f"training mode, and it has {', '.join(sensitive[:3])}",
            {"evaluation_calls": len(eval_calls), "in_training_mode": len(in_train),
             "mode_dependent_modules": sensitive},
            "In training mode Dropout drops units at random and BatchNorm normalises with the "
            "batch's own statistics (and updates its running averages with test data): the "
            "accuracy measured is lower and noisier than the model's, and predictions change "
            "with the batch.",
            f"{names.model}.eval()               # before evaluating\nwith torch.no_grad():\n"
            f"    ...\n{names.model}.train()              # before training again"))
    first_eval = min((p.calls[0].index for p in passes), default=None)
    stuck = [c for c in train if not c.training and first_eval is not None
             and c.index > first_eval]
    after = [c for c in train if first_eval is not None and c.index > first_eval]
    if stuck and len(stuck) >= 0.8 * len(after):
        findings.append(Finding(
            "trains-in-eval-mode", "warning",
            f"after the first evaluation, {len(stuck)} of {len(after)} training steps ran "
            f"with {names.model} still in eval mode",
            {"training_calls_after_first_evaluation": len(after), "in_eval_mode": len(stuck),
             "mode_dependent_modules": sensitive},
            "model.eval() stays in force until model.train(): from the second epoch on, "
            "Dropout is off and BatchNorm uses (and no longer updates) its running averages "
            "while training, so the model trains differently from what the script intends.",
            f"{names.model}.train()     # at the start of every training epoch"))
    return findings


def check_batches(w: Watch, train_losses: list, classes: int) -> list[Finding]:
    usable = [lc for lc in train_losses if lc.classes_in_batch is not None
              and lc.target_shape and lc.target_shape[0] >= 20]
    if len(usable) < 5 or classes < 4:
        return []
    distinct = [lc.classes_in_batch for lc in usable]
    tops = [lc.top_class for lc in usable]
    longest, run = 1, 1
    for a, b in itertools.pairwise(tops):
        run = run + 1 if a == b else 1
        longest = max(longest, run)
    median = statistics.median(distinct)
    if median > 2:
        return []
    return [Finding(
        "batches-sorted-by-class", "error",
        f"training batches hold {median:g} class(es) each (median over {len(usable)} "
        f"batches); one class fills {longest} batches in a row",
        {"batches": len(usable), "median_classes_per_batch": median,
         "longest_run_same_class": longest, "first_batches_majority_class": tops[:12],
         "batch_size": usable[0].target_shape[0]},
        "With the data sorted by label and not shuffled, each stretch of training sees one "
        "digit: the model learns to answer that digit, then forgets it for the next one, and "
        "ends each epoch predicting the last classes it saw (10-20% accuracy).",
        "loader = DataLoader(train_set, batch_size=64, shuffle=True)\n"
        "# or by hand, every epoch: perm = torch.randperm(len(x)); x, y = x[perm], y[perm]")]


def check_labels_range(train_losses: list, names: Names) -> list[Finding]:
    for lc in train_losses:
        if lc.name not in ("cross_entropy", "nll_loss") or lc.target_min is None:
            continue
        if lc.target_dtype.startswith(("float", "bfloat")) or len(lc.output_shape) < 2:
            continue
        c = lc.output_shape[1]
        if lc.target_min < 0 or lc.target_max >= c:
            return [Finding(
                "labels-out-of-range", "error",
                f"labels run from {lc.target_min:g} to {lc.target_max:g}, but the model has "
                f"{c} outputs (classes 0..{c - 1})",
                {"label_min": lc.target_min, "label_max": lc.target_max, "outputs": c},
                "The loss indexes the output with the label: a label >= the number of outputs "
                "fails with 'Target N is out of bounds' (on a GPU: a device-side assert), and "
                "labels shifted by one train every class against its neighbour's output.",
                "y = y - 1        # if the labels are 1..10\n"
                f"assert 0 <= y.min() and y.max() < {c}")]
    return []


def check_evaluation_data(w: Watch, train: list[Call], passes: list[Pass],
                          test_keys: set[tuple[int, ...]] | None,
                          names: Names) -> tuple[dict[str, Any], list[Finding]]:
    """Evaluation passes on images the model trained on; the best taken on the test set."""
    trained = _key_set(torch.cat([c.keys for c in train if c.keys is not None])
                       if any(c.keys is not None for c in train) else None)
    stats = []
    train_loaders = {i.id for i in w.loaders.values() if i.train_passes}
    for i, p in enumerate(passes):
        keys = p.keys()
        if keys is None or len(keys) < MIN_PASS:
            continue
        if p.calls[0].loader in train_loaders:
            continue  # the training loader itself, evaluated: a training accuracy, on purpose
        rows = [tuple(k) for k in keys.tolist()]
        seen = sum(k in trained for k in rows) / len(rows)
        std = p.keys(standard=True)
        in_test = None
        if test_keys and std is not None:
            in_test = sum(tuple(k) in test_keys for k in std.tolist()) / len(std)
        stats.append({"pass": i, "images": len(rows), "trained_on": seen, "test_split": in_test,
                      "followed_by_training": p.followed_by_training})
    m: dict[str, Any] = {"evaluation_passes": stats}
    findings: list[Finding] = []
    if stats and all(s["trained_on"] >= OVERLAP for s in stats):
        worst = max(stats, key=lambda s: s["trained_on"])
        findings.append(Finding(
            "evaluates-on-training-images", "warning",
            f"every evaluation ran on images the model trained on ({worst['trained_on']:.0%} "
            f"of one evaluation's {worst['images']} images were training batches)",
            {"evaluations": len(stats), "trained_on_fraction": [s["trained_on"] for s in
                                                                 stats],
             "training_images_seen": len(trained)},
            "An accuracy measured on training images measures memory, not how well the model "
            "reads new handwriting: it is too high, and it keeps rising when the model "
            "overfits. (Only part of the training set was seen before the budget ran out, so "
            "the true overlap is higher.)",
            "test_set = datasets.MNIST(root, train=False, transform=transform)   # not "
            "train=True\n"
            "test_loader = DataLoader(test_set, batch_size=1000)"))
    test_passes = [(s, passes[s["pass"]]) for s in stats
                   if s["test_split"] is not None and s["test_split"] >= 0.5
                   and s["trained_on"] < OVERLAP]
    mid = [(s, p) for s, p in test_passes if p.followed_by_training]
    if mid:
        ends = {p.calls[-1].index for _, p in mid}
        starts = sorted(c.index for c in train)
        signals = []
        for e in w.events:
            after_pass = [i for i in ends if i < e.calls]
            if not after_pass:
                continue
            last_end = max(after_pass)
            nxt = next((s for s in starts if s > last_end), None)
            if nxt is not None and e.calls > nxt:
                continue  # not in the gap between the test pass and the next training
            if e.kind == "save" and "best" in e.detail.lower():
                signals.append(f"torch.save to {e.detail} right after a test evaluation")
            elif e.kind == "state_dict" and not any(
                    f.kind == "save" and f.calls == e.calls for f in w.events):
                signals.append("a copy of the weights kept in memory right after a test "
                               "evaluation")
            elif e.kind == "load_state_dict" and nxt is None:
                signals.append("weights restored after the last test evaluation")
        if signals:
            findings.append(Finding(
                "selects-on-test", "warning",
                "the test set is evaluated during training and the best weights are taken "
                "from it",
                {"test_evaluations_during_training": len(mid), "signals": sorted(set(signals)),
                 "test_split_fraction": mid[0][0]["test_split"]},
                "Keeping the epoch with the best test accuracy chooses it by the test set: the "
                "accuracy reported for it is optimistically biased, and the test set no "
                "longer measures anything the choice did not see. Choose on a validation "
                "split held out from the training images; look at the test set once, at the "
                "end.",
                "train_set, val_set = torch.utils.data.random_split(full_train, [55000, 5000])\n"
                "# choose the best epoch by accuracy on val_set, save that checkpoint;\n"
                "# evaluate on the test set once, after training"))
    return m, findings


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def check_loss_curve(w: Watch, names: Names) -> tuple[dict[str, Any], list[Finding]]:
    values = w.loss_values
    m: dict[str, Any] = {"losses_seen": len(values)}
    if not values:
        return m, []
    m.update(first=values[0], last=values[-1])
    bad = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)
    if bad is not None:
        m["non_finite_at"] = bad
        return m, [Finding(
            "loss-nan", "error",
            f"the loss became {values[bad]} at step {bad + 1}"
            + (f" (it started at {values[0]:.4g})" if bad else ""),
            {"step": bad + 1, "first_loss": values[0],
             "last_finite": next((v for v in reversed(values[:bad]) if math.isfinite(v)), None),
             "lr": w.lrs[0] if w.lrs else None},
            "Once a NaN or inf appears, every weight it touches becomes NaN and the model "
            "predicts one class forever. Usually a learning rate far too high for the loss "
            "scale (or raw 0-255 inputs), sometimes a log of 0.", "")]
    if len(values) >= 20:
        head, tail = _median(values[:5]), _median(values[-5:])
        m.update(median_first_5=head, median_last_5=tail)
        if tail > 1.5 * head and tail > head + 0.5:
            return m, [Finding(
                "loss-diverges", "error",
                f"the loss rises during training: {head:.4g} -> {tail:.4g} (median of the "
                f"first and last 5 of {len(values)} steps)",
                {"median_first_5": head, "median_last_5": tail, "steps": len(values),
                 "lr": w.lrs[0] if w.lrs else None},
                "Steps that overshoot make the loss climb instead of fall.", "")]
    return m, []


def check_updates(run: ScriptRun, train: list[Call], names: Names) -> list[Finding]:
    w = run.watch
    if not train or w.steps == 0:
        return []
    batch = train[0].batch
    same = (len(train) >= 2 and train[0].keys is not None and train[1].keys is not None
            and len(train[0].keys) == len(train[1].keys) and batch >= 1000
            and bool(torch.equal(train[0].keys[:64], train[1].keys[:64])))
    full = same or batch >= 10000
    ended = run.ended == "finished"
    if ended and w.steps >= UPDATES_WARN:
        return []
    if not ended and not full:
        return []
    ev = {"optimizer_steps": w.steps, "batch_size": batch, "script_ended": ended,
          "every_step_sees_the_same_images": same}
    if ended:
        title = (f"the script made {w.steps} optimizer steps in all"
                 + (f", each on the full batch of {batch:,} images" if full else
                    f" (batch {batch:,})"))
        severity = "error" if w.steps < UPDATES_ERROR else "warning"
    else:
        title = (f"every optimizer step uses the whole training set ({batch:,} images): "
                 "one update per epoch")
        severity = "warning"
    return [Finding(
        "too-few-updates", severity, title, ev,
        "Every optimizer step is one update of the weights, however many images the batch "
        "holds. A network needs hundreds to thousands of updates to learn MNIST; a batch of "
        "all 60,000 images gives one per epoch, so ten epochs leave it close to where it "
        "started. A bigger batch does not make up for it: its gradient points the same way "
        "as that of 64 images, only less noisily.",
        "for i in range(0, len(x_train), 64):          # mini-batches of 64\n"
        "    xb, yb = x_train[i:i + 64], y_train[i:i + 64]\n"
        f"    {names.optimizer}.zero_grad()\n    {names.loss} = {names.criterion}("
        f"{names.model}(xb), yb)\n    {names.loss}.backward()\n    {names.optimizer}.step()\n"
        "# or: DataLoader(TensorDataset(x_train, y_train), batch_size=64, shuffle=True)")]


def check_accumulation(w: Watch, names: Names) -> list[Finding]:
    if len(w.accumulation_steps) < 3:
        return []
    return [Finding(
        "loss-accumulated-as-tensor", "warning",
        f"a running total of the loss is kept as a tensor with its graph, across "
        f"{len(w.accumulation_steps)} optimizer steps",
        {"steps_accumulated": len(w.accumulation_steps)},
        "`total += loss` keeps every step's loss tensor, and through it every step's "
        "autograd graph and saved activations, alive until the total is dropped: memory grows "
        "every step (out of memory on a GPU within an epoch), and each addition is recorded "
        "for a backward that never comes.",
        f"running_loss += {names.loss}.item()        # a Python float, no graph\n"
        f"# or: running_loss += {names.loss}.detach()")]


def check_shuffle_note(w: Watch, sorted_found: bool) -> list[Finding]:
    if sorted_found:
        return []
    unshuffled = [i for i in w.loaders.values() if i.train_passes and
                  i.sampler == "SequentialSampler"]
    if not unshuffled:
        return []
    return [Finding(
        "shuffle-off", "note",
        "the training DataLoader does not shuffle; the data is not sorted by class, so this "
        "trains, but every epoch repeats the same batches",
        {"dataset": unshuffled[0].dataset, "sampler": unshuffled[0].sampler},
        "Reshuffling every epoch gives different batches, a less biased gradient estimate and "
        "usually slightly better accuracy.",
        "DataLoader(train_set, batch_size=64, shuffle=True)")]


# ---- today's probes on the script's model ----------------------------------------------------
def _test_split_keys(run: ScriptRun) -> set[tuple[int, ...]] | None:
    name = next((u for u in ("fashion-mnist", "kmnist") if any(
        u.replace("-", "") in s.lower().replace("_", "") for s in run.stand_ins)), "mnist")
    try:
        from mnistlab.data.dataset import load_dataset

        data = load_dataset(name, None, download=False)
    except Exception:  # no local copy: the test split is not known
        return None
    flat = data.test_images.reshape(len(data.test_images), -1).float()
    return _key_set(fingerprints(flat))


def probe_model(run: ScriptRun, model: nn.Module | None, train_losses: list,
                names: Names) -> Any:
    """examine() on a copy of the model as the script built it, with its batches, loss,
    optimizer and rate; None when the model, its batches or its loss cannot be known."""
    from mnistlab.doctor.examine import examine

    w = run.watch
    if model is None or id(model) not in w.snapshots or not w.captured:
        return None
    loss_name = next((lc.name for lc in train_losses), None)
    kind = LOSS_KINDS.get(loss_name or "")
    if kind is None:
        return None
    opt = next((o for o in w.optimizers if any(p is q for g in o.param_groups
                                               for p in g["params"]
                                               for q in list(model.parameters())[:1])),
               w.optimizers[0] if w.optimizers else None)
    factory, opt_name, lr, warmup = None, None, 0.01, None
    if opt is not None:
        group = opt.param_groups[0]
        factory, settings = optimizer_factory(opt, group)
        shown = ", ".join(f"{k}={v}" for k, v in settings.items()
                          if v not in (0, 0.0, False, None) and k not in ("maximize",))
        opt_name = f"{type(opt).__name__}({shown})" if shown else type(opt).__name__
        first = w.lrs[0] if w.lrs else float(group.get("lr", 0.01))
        peak = group.get("max_lr")
        lr, warmup = (float(peak), first) if peak and peak > first * 1.5 else (first, None)
    classes = next((lc.output_shape[1] for lc in train_losses if len(lc.output_shape) == 2),
                   10)
    batch = [(x, y) for x, y in w.captured]
    try:
        return examine(w.snapshots[id(model)], loss_fn=kind, optimizer_factory=factory,
                       optimizer_name=opt_name, lr=lr, warmup_lr=warmup,
                       batch_size=len(batch[0][0]), epochs=None, batches=batch,
                       classes=classes, subject=type(model).__name__)
    except Exception as e:  # the user's model under our probes: report, do not crash
        return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"


def _merge_probe(report: Report, probe: Report, curve: dict[str, Any],
                 curve_findings: list[Finding]) -> None:
    """Add examine()'s findings, judged against what the run showed: the rate probe's
    verdicts only where the run's own loss agrees; [0, 1] inputs as a note."""
    head, tail = curve.get("first"), curve.get("median_last_5")
    fell = head is not None and tail is not None and tail < 0.8 * head
    diverged = bool(curve_findings)
    lr_m = probe.measurements.get("lr_probe") or {}
    for f in probe.findings:
        if f.name == "lr-diverges" and fell:
            continue
        if f.name == "lr-too-small" and (fell or head is None):
            continue
        if f.name == "lr-diverges" and diverged:
            continue  # the run's own finding carries the fix below
        if f.name == "inputs-not-normalized" and f.severity == "warning":
            f.severity = "note"
        if f.name == "lr-raises-loss" and fell:
            continue
        report.add(f)
    for f in curve_findings:
        best = lr_m.get("best_lr")
        lr = f.evidence.get("lr")
        if best and lr and best < lr:
            f.fix = (f"use a learning rate near {best:g} (the probe's best from the model's "
                     f"starting weights; yours: {lr:g}), e.g.\n"
                     f"optimizer = {lr_m.get('optimizer', 'SGD')}(model.parameters(), "
                     f"lr={best:g})")
            f.evidence["working_lr_in_probe"] = best
        elif not f.fix:
            f.fix = ("lower the learning rate 10x; check the inputs are scaled to about [-1, 1]"
                     " and that no log() sees a 0")


def diagnose(run: ScriptRun, probes: bool = True) -> Report:
    w = run.watch
    names = Names.of(w)
    model = w.trained_model()
    train, passes = split_calls(w, id(model) if model is not None else None)
    train_losses = [lc for lc in w.losses if lc.requires_grad]
    classes = next((lc.output_shape[1] for lc in train_losses if len(lc.output_shape) == 2),
                   10)
    stopped = {"budget": "stopped by the budget", "finished": "ended on its own",
               "error": "failed", "interrupted": "interrupted"}.get(run.ended, run.ended)
    params = sum(p.numel() for p in model.parameters()) if model is not None else 0
    subject = (f"{run.path.name}{' ' + ' '.join(run.args) if run.args else ''} ({stopped} "
               f"after {w.steps} optimizer steps, {run.seconds:.1f} s)"
               + (f"; {type(model).__name__} ({params:,} parameters)" if model is not None
                  else "; no nn.Module trained")
               + (f"; loss {train_losses[0].name}" if train_losses else "")
               + (f"; {type(w.optimizers[0]).__name__} lr {w.lrs[0]:g}" if w.optimizers
                  and w.lrs else ""))
    report = Report(subject)
    m = report.measurements
    m["script"] = {
        "path": str(run.path), "args": run.args, "ended": run.ended, "seconds": run.seconds,
        "optimizer_steps": w.steps, "backward_calls": w.backwards, "zero_grad_calls":
        w.zero_grads, "training_calls": len(train), "evaluation_passes": len(passes),
        "batch_size": train[0].batch if train else None, "stand_ins": run.stand_ins,
        "names": dict(w.names), "error": run.error, "error_where": run.error_where,
        "output_lines": run.output_lines, "loaders": [vars(i) for i in w.loaders.values()],
        "evaluation_batches_cut": w.cut_passes}
    found: list[Finding] = []
    found += check_training_happens(run, train, names)
    found += check_gradients(w, names)
    found += check_labels_range(train_losses, names)
    sorted_found = check_batches(w, train_losses, classes)
    found += sorted_found
    found += check_shuffle_note(w, bool(sorted_found))
    found += check_updates(run, train, names)
    found += check_accumulation(w, names)
    curve, curve_findings = check_loss_curve(w, names)
    m["loss_curve"] = curve
    test_keys = _test_split_keys(run) if passes else None
    evals, eval_findings = check_evaluation_data(w, train, passes, test_keys, names)
    m.update(evals)
    found += eval_findings
    probe = probe_model(run, model, train_losses, names) if probes else None
    x = w.captured[0][0] if w.captured else None
    if model is not None:
        sensitive = _mode_sensitive(model, w.snapshots.get(id(model)), x)
        found += check_modes(w, model, train, passes, sensitive, names)
    report.add(*found)
    if isinstance(probe, Report):
        for key, value in probe.measurements.items():
            m.setdefault(key, value)
        have = set(report.names)
        probe.findings = [f for f in probe.findings if f.name not in have]
        _merge_probe(report, probe, curve, curve_findings)
    else:
        if isinstance(probe, str):
            m["probe_error"] = probe
        for f in curve_findings:
            if not f.fix:
                f.fix = ("lower the learning rate 10x; check the inputs are scaled to about "
                         "[-1, 1] and that no log() sees a 0")
    # A loss that climbs because gradients pile up or the output is broken is explained
    # by that error; the rate is not the cause.
    if not report.errors:
        report.add(*[f for f in curve_findings if f.name not in report.names])
    if run.ended == "error" and not report.errors:
        report.add(Finding(
            "script-failed", "error", f"the script stopped with {run.error}",
            {"error": run.error, "where": run.error_where, "optimizer_steps": w.steps},
            "The doctor diagnoses what ran before the error; the error itself is in the "
            "script's output above.", "see the script's error message above"))
    elif run.ended.startswith("exit"):
        report.add(Finding("script-exit-status", "note",
                           f"the script ended with status {run.ended.split()[1]}",
                           {"error": run.error}, "A non-zero exit status usually means the "
                           "script gave up on something (arguments, a file).",
                           "see the script's output above"))
    if w.steps == 0 and w.backwards == 0 and run.ended != "error" and not report.errors:
        report.add(Finding(
            "no-training-seen", "warning", "the script never trained: no backward(), no "
            "optimizer step",
            {"model_calls": len(w.calls), "ended": run.ended},
            "The doctor watches training steps; this run made none (a script that only "
            "evaluates, or needs arguments to train?).",
            "run the script's training entry point: mnistlab doctor train.py --its-args"))
    report.seconds = run.seconds
    return report
