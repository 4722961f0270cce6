"""Checks 1-3: is the model's output what its loss expects?

The form of the output is read from the numbers, whatever produced them: rows that are
non-negative and sum to 1 are a softmax over the classes; columns that do are a softmax over
the batch (`dim=0`); rows whose exponentials sum to 1 are a log-softmax; outputs that are never
negative came through ReLU, sigmoid or the like. In eval mode, a softmax over the batch also
shows as one image's output changing when the rest of the batch changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mnistlab.doctor.findings import Finding
from mnistlab.doctor.losses import Loss

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


@torch.no_grad()
def batch_dependence(model: nn.Module, x: torch.Tensor) -> float:
    """In eval mode, how much the first half's outputs change when run without the second
    half (relative). 0 for a model that treats images independently."""
    if len(x) < 4:
        return 0.0
    was = model.training
    model.eval()
    try:
        k = len(x) // 2
        full, half = model(x)[:k].float(), model(x[:k]).float()
    finally:
        model.train(was)
    return float((full - half).abs().max() / full.abs().max().clamp(min=1e-12))


LOGITS_FIX = """\
def forward(self, x):
    ...
    return self.fc_out(x)        # raw logits: no ReLU, no softmax after the last layer
# train:  loss = F.cross_entropy(model(x), y)        (log-softmax is inside the loss)
# predict: probs = model(x).softmax(dim=1)           (only where you need probabilities)"""


def check_output(form: OutputForm, loss: Loss, loss_value: float, produced_by: str | None,
                 mixing: float, classes: int) -> list[Finding]:
    ev = dict(form.evidence)
    if produced_by:
        ev["produced_by"] = produced_by
    f = form.form
    if f in ("softmax_batch", "log_softmax_batch") or mixing > 1e-3:
        what = "log-softmax" if f == "log_softmax_batch" else "softmax"
        return [Finding(
            "softmax-over-batch", "error",
            f"the output is a {what} over the batch dimension (dim=0), not over the classes",
            {**ev, "batch_dependence": mixing},
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
