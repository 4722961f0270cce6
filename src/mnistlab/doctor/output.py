"""Checks 1-3: is the model's output what its loss expects?

The form of the output is read from the numbers, whatever produced them: rows that are
non-negative and sum to 1 are a softmax over the classes; columns that do are a softmax over
the batch (`dim=0`); rows whose exponentials sum to 1 are a log-softmax; outputs that are never
negative came through ReLU, sigmoid or the like. In eval mode, a softmax over the batch also
shows as one image's output changing when the rest of the batch changes (measured with any
randomness switched off: see evalmode.eval_behaviour).

When the output is a softmax or log-softmax, its form hides what fed it: a ReLU on the
logits under a final log_softmax looks like proper log-probabilities. So the trace keeps the
input of the normalisation that produced the output, and `check_normalised_input` judges
that: never negative (ReLU, clamp, abs, softplus...) or confined to a narrow range (sigmoid,
tanh) by the call that produced it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from mnistlab.doctor.findings import Finding
from mnistlab.doctor.losses import Loss
from mnistlab.doctor.trace import Normalisation

TOL = 1e-3  # on sums of 10 float32 probabilities


@dataclass
class OutputForm:
    form: str  # logits | log_softmax | softmax | nonnegative | softmax_batch | log_softmax_batch
    evidence: dict[str, Any]


def output_form(z: torch.Tensor) -> OutputForm:
    z = z.detach().float()
    rows, cols = z.sum(1), z.sum(0)
    exp_rows, exp_cols = z.exp().sum(1), z.exp().sum(0)
    ev: dict[str, Any] = {
        "min": float(z.min()), "max": float(z.max()),
        "negative_fraction": float((z < 0).float().mean()),
        "zero_fraction": float((z == 0).float().mean()),
        "row_sum_mean": float(rows.mean()), "row_sum_max_error": float((rows - 1).abs().max()),
        "column_sum_max_error": float((cols - 1).abs().max()),
    }
    nonneg = ev["min"] >= 0
    batch = z.shape[0] > 1
    if float(z.abs().max()) < 1e-6:
        form = "logits"  # all zero, e.g. a zero-initialised last layer: nothing to read yet
    elif nonneg and ev["row_sum_max_error"] < TOL:
        form = "softmax"
    elif nonneg and batch and ev["column_sum_max_error"] < TOL:
        form = "softmax_batch"
    elif nonneg:
        form = "nonnegative"
    elif ev["max"] <= 1e-5 and float((exp_rows - 1).abs().max()) < TOL:
        form = "log_softmax"
        ev["exp_row_sum_max_error"] = float((exp_rows - 1).abs().max())
    elif ev["max"] <= 1e-5 and batch and float((exp_cols - 1).abs().max()) < TOL:
        form = "log_softmax_batch"
        ev["exp_column_sum_max_error"] = float((exp_cols - 1).abs().max())
    else:
        form = "logits"
    return OutputForm(form, ev)


LOGITS_FIX = """\
def forward(self, x):
    ...
    return self.fc_out(x)        # raw logits: no ReLU, no softmax after the last layer
# train:  loss = F.cross_entropy(model(x), y)        (log-softmax is inside the loss)
# predict: probs = model(x).softmax(dim=1)           (only where you need probabilities)"""


MIXING_TOL = 1e-3  # relative change of an image's output when its batch mates change


def check_output(form: OutputForm, loss: Loss, loss_value: float, produced_by: str | None,
                 mixing: float | None, classes: int) -> list[Finding]:
    """mixing: how much an image's eval-mode output depends on its batch mates (None: not
    measurable, the output being random in eval mode)."""
    ev = dict(form.evidence)
    if produced_by:
        ev["produced_by"] = produced_by
    f = form.form
    if f in ("softmax_batch", "log_softmax_batch") or (mixing or 0.0) > MIXING_TOL:
        what = "log-softmax" if f == "log_softmax_batch" else "softmax"
        return [Finding(
            "softmax-over-batch", "error",
            f"the output is a {what} over the batch dimension (dim=0), not over the classes",
            {**ev, "batch_dependence": mixing if mixing is not None
             else "not measurable (the output is random in eval mode)"},
            "Each column (one class across the batch) sums to 1 instead of each row (one image "
            "across the classes). The prediction for an image then depends on which other "
            "images share its batch, the scores of one image are not a distribution over the "
            f"{classes} classes, and training optimises the wrong thing. This is wrong for "
            "every loss, NLLLoss included.",
            "x = x.softmax(dim=1)        # over the classes, never dim=0\n"
            "# better: return the logits and use F.cross_entropy, which applies log-softmax\n"
            + LOGITS_FIX)]
    if loss.kind == "cross_entropy":
        if f == "softmax":
            floor = math.log(1 + (classes - 1) / math.e)
            ceiling = math.log(1 + (classes - 1) * math.e)
            return [Finding(
                "softmax-before-cross-entropy", "error",
                "the output is already a softmax, and the cross-entropy loss applies "
                "log-softmax again",
                {**ev, "loss_now": loss_value, "best_possible_loss": floor,
                 "worst_possible_loss": ceiling},
                "CrossEntropyLoss expects logits. Fed probabilities in [0, 1], the loss is "
                f"squashed into [{floor:.3f}, {ceiling:.3f}]: even a perfect model cannot go "
                f"below {floor:.3f}, the gradients shrink by the softmax's slope, and learning "
                "stalls near chance level.",
                "remove the softmax from forward():\n" + LOGITS_FIX)]
        if f == "nonnegative":
            return [Finding(
                "non-negative-output", "error",
                "the output is never negative (ReLU, sigmoid or similar on the last layer) "
                "before a cross-entropy loss",
                {**ev, "loss_now": loss_value},
                "Logits must be free to go negative: cross-entropy pushes the wrong classes' "
                "logits down. After a ReLU every logit below 0 is clamped to 0 and gets no "
                "gradient, so a class whose logit is 0 for an image cannot be pushed away, and "
                "a class that is 0 for every image is dead for good.",
                "drop the activation after the last layer:\n" + LOGITS_FIX)]
        if f == "log_softmax":
            return [Finding(
                "log-softmax-before-cross-entropy", "note",
                "the output is a log-softmax and the loss is cross-entropy: harmless",
                ev,
                "log_softmax is idempotent (applying it twice changes nothing), so this trains "
                "exactly like logits with cross-entropy; it is only redundant.",
                "keep log_softmax and use F.nll_loss, or return logits and use "
                "F.cross_entropy")]
        return []
    if loss.kind == "nll":
        if f == "log_softmax":
            return []
        if f == "logits":
            return [Finding(
                "logits-to-nll", "error",
                "the output is raw logits, but NLLLoss expects log-probabilities",
                {**ev, "loss_now": loss_value},
                "NLLLoss only picks -output[y]; it does not normalise. On raw logits the loss "
                "is unbounded below: the model lowers it by making every logit larger, not by "
                "ranking the right class first.",
                "return F.log_softmax(logits, dim=1) from forward() (keep NLLLoss),\n"
                "or keep the logits and use F.cross_entropy (= log_softmax + nll_loss)")]
        return [Finding(
            "probabilities-to-nll", "error",
            "the output is not a log-softmax (it is never negative), but NLLLoss expects "
            "log-probabilities",
            {**ev, "loss_now": loss_value},
            "NLLLoss computes -output[y]. On probabilities or ReLU outputs that is -p[y] in "
            "[-1, 0] (or unbounded), with no logarithm: the gradient barely depends on how wrong "
            "the model is, and the loss is not a likelihood.",
            "return F.log_softmax(logits, dim=1) from forward() (keep NLLLoss)")]
    if f == "logits":
        return [Finding(
            "mse-for-classification", "note",
            f"the loss is {loss.name} (regression on one-hot targets) rather than cross-entropy",
            {**ev, "loss_now": loss_value},
            "Mean squared error on one-hot targets trains, but its gradient fades as outputs "
            "saturate and it usually needs more epochs to reach cross-entropy's accuracy.",
            "loss = F.cross_entropy(model(x), y)      # y: int64 class indices")]
    return []


def _normalised_fix(producer: str | None) -> str:
    call = ("F.relu" if not producer else f"F.{producer}" if hasattr(F, producer)
            else f"torch.{producer}" if hasattr(torch, producer) else "F.relu")
    return (f"return F.log_softmax(self.fc_out(x), dim=1)   # not F.log_softmax({call}("
            "self.fc_out(x)), dim=1)\n"
            "# nn.Sequential(..., nn.Linear(128, 10), nn.LogSoftmax(dim=1))   # nothing between\n"
            "# train with F.nll_loss; or return the logits and use F.cross_entropy")


def check_normalised_input(norm: Normalisation | None, loss_value: float,
                           classes: int) -> list[Finding]:
    """The logits a final softmax/log_softmax normalises: never negative, or squashed into a
    narrow range by a bounded call (sigmoid, tanh, clamp)?"""
    if norm is None or norm.input.dim() != 2 or norm.dim not in (1, -1):
        return []
    z = norm.input
    if float(z.abs().max()) < 1e-6:
        return []  # all zero (a zero-initialised last layer): nothing to judge yet
    lo, hi = float(z.min()), float(z.max())
    bounds = norm.bounds
    squashed = bounds is not None and None not in bounds
    if lo < 0 and not squashed:
        return []
    ev: dict[str, Any] = {"normalised_by": norm.call,
                          "fed_by": norm.producer or "an unseen call",
                          "input_min": lo, "input_max": hi}
    if squashed:
        width = float(bounds[1]) - float(bounds[0])
        top = math.exp(width) / (math.exp(width) + classes - 1)
        ev.update(bounds=list(bounds), highest_possible_probability=top,
                  best_possible_loss=-math.log(top), loss_now=loss_value)
        return [Finding(
            "squashed-before-softmax", "error",
            f"the {norm.call} at the end normalises values that {ev['fed_by']} confines to "
            f"[{bounds[0]:g}, {bounds[1]:g}]",
            ev,
            f"A softmax of scores that differ by at most {width:g} can never be confident: no "
            f"class gets a probability above {top:.3f}, so the loss cannot go below "
            f"{-math.log(top):.3f} however well the model ranks the digits, and the gradient "
            f"through {ev['fed_by']} fades where it saturates. Accuracy can look normal (the "
            "ranking still works), but every probability the model reports is wrong, and so is "
            "whatever is built on them: confidence thresholds, rejecting non-digits, "
            "calibration. The output looks like proper (log-)probabilities, which is why this "
            "goes unnoticed.",
            "drop the bounded activation between the last layer and the softmax:\n"
            + _normalised_fix(norm.producer))]
    zero = z == 0
    ev.update(clamped_fraction=float(zero.float().mean()),
              images_with_all_inputs_zero=int(zero.all(1).sum()),
              classes_zero_for_every_image=int(zero.all(0).sum()), loss_now=loss_value)
    return [Finding(
        "non-negative-before-softmax", "error",
        f"the {norm.call} at the end normalises logits that are never negative "
        + (f"(they come from {norm.producer}" if norm.producer else "(an activation before it")
        + f"; {ev['clamped_fraction']:.0%} are exactly 0)",
        ev,
        "The normalisation makes the output look like proper log-probabilities, but what it "
        "normalises cannot go below 0: the loss pushes the wrong classes' logits down, and "
        "after a ReLU or clamp every logit at 0 gets no gradient (the clamped fraction above), "
        "so a class stuck at 0 for an image cannot be pushed away and one stuck at 0 for every "
        "image is dead for good. After abs, softplus or exp the logits cannot go negative "
        "either: it is the same bug as a ReLU on the output, hidden under the softmax.",
        "drop the activation between the last layer and the softmax:\n"
        + _normalised_fix(norm.producer))]
