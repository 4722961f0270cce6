"""Check 9: does the model behave as it should in eval mode, and is it evaluated in it?

Dropout and batch-norm behave differently in training mode: dropout zeroes random units,
batch-norm normalises with the batch's own statistics. An evaluation that forgets
`model.eval()` gets noisy, batch-dependent and usually worse predictions. We hand the user's
evaluation function a copy of the model in training mode, as it is right after a training
epoch, and watch: which modules ran in training mode, and whether the output changes from
one call to the next, or differs from the output in eval mode.

In eval mode itself a model must be a function of each image: two identical passes agree,
and an image's output does not depend on its batch mates. `eval_behaviour` tells the two
apart: it runs the same batch twice (randomness: typically `F.dropout(x, 0.5)`, whose
`training` argument defaults to True and so ignores `model.eval()`), then, with that dropout
switched to eval behaviour, the batch and its first half (dependence on the batch, e.g. a
softmax over dim=0).
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mnistlab.doctor.findings import Finding
from mnistlab.doctor.loading import _one_line
from mnistlab.doctor.trace import RandomCall, RandomWatch
from mnistlab.errors import MnistlabError

EvalFn = Callable[[nn.Module, torch.Tensor], Any]
# Layers whose output depends on model.training (functional dropout is caught by its effect).
MODE_DEPENDENT = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._NormBase)
NOISE_TOL = 1e-4  # relative change between two passes that is more than float noise


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / a.abs().max().clamp(min=1e-12))


@dataclass
class EvalBehaviour:
    change: float  # between two identical eval passes, relative to the output's scale
    predictions_changed: float  # fraction of images whose predicted class differs between them
    calls: list[RandomCall]  # the random calls of one eval pass
    residual: float  # the change left with eval-mode dropout switched off
    batch_dependence: float | None  # None: not measurable (randomness left)
    accuracies: dict[str, float] | None = None  # as evaluated twice, and with dropout off

    @property
    def eval_dropout(self) -> list[RandomCall]:
        return [c for c in self.calls if c.dropout and c.in_eval_mode]


@torch.no_grad()
def eval_behaviour(model: nn.Module, x: torch.Tensor,
                   labels: torch.Tensor | None = None) -> EvalBehaviour:
    """How the model behaves in eval mode: random from pass to pass, and (with its eval-mode
    dropout switched off) dependent on the rest of the batch."""
    was = model.training
    model.eval()
    try:
        with RandomWatch(model) as watch:
            first = model(x).float()
            calls = list(watch.calls)
            second = model(x).float()
        # Without random calls there is nothing to switch off: the passes above serve.
        with RandomWatch(model, suppress=True):
            full, again = ((model(x).float(), model(x).float()) if calls
                           else (first, second))
            k = len(x) // 2
            half = model(x[:k]).float() if len(x) >= 4 else None
    finally:
        model.train(was)
    residual = _relative(full, again)
    mixing = None
    if half is None:
        mixing = 0.0
    elif residual <= NOISE_TOL:
        mixing = _relative(full[:k], half)
    flips = float((first.argmax(-1) != second.argmax(-1)).float().mean())
    accuracies = None
    if labels is not None and first.dim() == 2 and len(first) == len(labels):
        accuracies = {name: float((out.argmax(1) == labels).float().mean())
                      for name, out in (("first_pass", first), ("second_pass", second),
                                        ("dropout_off", full))}
    return EvalBehaviour(_relative(first, second), flips, calls, residual, mixing, accuracies)


def _summarise(calls: list[RandomCall]) -> list[str]:
    counts = Counter(c.describe() for c in calls)
    return [text + (f" (x{n})" if n > 1 else "") for text, n in counts.items()]


DROPOUT_FIX = """\
x = F.dropout(x, 0.5, training=self.training)   # follows model.train() / model.eval()
# or a module, which does that for you:
self.dropout = nn.Dropout(0.5)                   # in __init__
x = self.dropout(x)                              # in forward"""


def check_eval_randomness(b: EvalBehaviour) -> list[Finding]:
    """Findings for a model whose output changes between two identical eval-mode passes."""
    if b.change <= NOISE_TOL:
        return []
    ev: dict[str, Any] = {"change_between_two_eval_passes": b.change,
                          "predictions_changed": b.predictions_changed,
                          "random_calls_in_eval_mode": _summarise(
                              [c for c in b.calls if c.in_eval_mode]) or ["none seen"]}
    if b.accuracies:
        ev.update({f"accuracy_{k}": v for k, v in b.accuracies.items()})
    dropout = b.eval_dropout
    if dropout:
        ev["change_with_it_switched_off"] = b.residual
        return [Finding(
            "dropout-ignores-eval", "error",
            f"dropout stays on after model.eval(): {dropout[0].describe()}",
            ev,
            "F.dropout's `training` argument defaults to True; it does not know about "
            "model.eval(). Called without training=self.training, it keeps zeroing random units "
            "at test time: the same image gets a different prediction from one call to the "
            "next, measured accuracy is lower and noisy, and a served model answers the same "
            "digit differently.",
            DROPOUT_FIX)]
    return [Finding(
        "random-in-eval-mode", "warning",
        "the output changes between two identical passes in eval mode",
        ev,
        "In eval mode a classifier should be a function of its input. Noise drawn in forward() "
        "(torch.randn_like, torch.rand, NumPy or Python random) makes every evaluation and "
        "every served prediction a lottery.",
        "draw noise only while training:\n"
        "if self.training:\n"
        "    x = x + 0.1 * torch.randn_like(x)\n" + DROPOUT_FIX.splitlines()[0])]


def _as_tensor(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().float().cpu()
    return torch.as_tensor(value, dtype=torch.float32)


def _mode_dependent(net: nn.Module, x: torch.Tensor) -> float:
    """Largest change of the output between training and eval mode (and between two
    training-mode calls), relative to the output's scale."""
    with torch.no_grad(), RandomWatch(net, suppress=True):
        torch.manual_seed(0)
        net.train()
        a, b = net(x).float(), net(x).float()
        net.eval()
        c = net(x).float()
    scale = c.abs().max().clamp(min=1e-12)
    return float(max((a - c).abs().max(), (a - b).abs().max()) / scale)


def check_eval_fn(model: nn.Module, eval_fn: EvalFn, x: torch.Tensor,
                  labels: torch.Tensor | None = None) -> list[Finding]:
    net = copy.deepcopy(model).train()
    if _mode_dependent(copy.deepcopy(net), x) < 1e-5:
        return []  # no dropout or batch-norm: training mode changes nothing
    seen: dict[str, bool] = {}
    hooks = [m.register_forward_pre_hook(
        lambda mod, _inp, name=name: seen.__setitem__(name, mod.training))
        for name, m in net.named_modules() if not any(m.children())]
    try:
        net.train()
        torch.manual_seed(0)
        # Dropout that ignores eval mode is its own finding: here it follows the mode.
        with torch.no_grad(), RandomWatch(net, suppress=True):
            try:
                first, second = _as_tensor(eval_fn(net, x)), _as_tensor(eval_fn(net, x))
            except Exception as e:  # the user's code: any failure becomes one line
                raise MnistlabError(f"the evaluation function failed on a batch of shape "
                                    f"{tuple(x.shape)}: {_one_line(e)}") from None
    finally:
        for h in hooks:
            h.remove()
    modules = dict(net.named_modules())
    in_training = [name for name, training in seen.items()
                   if training and isinstance(modules[name], MODE_DEPENDENT)]
    reference = copy.deepcopy(model).eval()
    with torch.no_grad(), RandomWatch(reference, suppress=True):
        proper = reference(x).float().cpu()
    change = float((first - second).abs().max())
    ev: dict[str, Any] = {"modules_in_training_mode": len(in_training),
                          "kinds": sorted({type(modules[n]).__name__ for n in in_training})
                          or ["functional dropout or batch-norm"],
                          "change_between_two_calls": change}
    if first.shape == proper.shape:
        ev["max_difference_to_eval_mode"] = float((first - proper).abs().max())
        change = max(change, ev["max_difference_to_eval_mode"])
    if not in_training and change <= 1e-5 * float(proper.abs().max().clamp(min=1e-12)):
        return []
    if labels is not None and first.dim() == 2 and len(first) == len(labels):
        y = labels.cpu()
        ev["accuracy_as_evaluated"] = float((first.argmax(1) == y).float().mean())
        ev["accuracy_in_eval_mode"] = float((proper.argmax(1) == y).float().mean())
    return [Finding(
        "evaluated-in-training-mode", "error",
        f"the evaluation runs the model in training mode ({', '.join(ev['kinds'])} active)",
        ev,
        "In training mode dropout drops random units and batch-norm uses each batch's own "
        "statistics, so the same image gets different predictions from call to call and the "
        "measured accuracy is noisy and usually too low.",
        "model.eval()                  # before evaluating\n"
        "with torch.no_grad():\n"
        "    logits = model(x)\n"
        "model.train()                 # before training again")]


def check_mode_gap(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[Finding]:
    """For a checkpoint: how much training mode would change its test predictions."""
    net = copy.deepcopy(model)
    with torch.no_grad(), RandomWatch(net, suppress=True):
        net.eval()
        proper = net(x).float()
        torch.manual_seed(0)
        net.train()
        noisy = net(x).float()
    if float((proper - noisy).abs().max()) < 1e-5 * float(proper.abs().max().clamp(min=1e-12)):
        return []
    acc_eval = float((proper.argmax(1) == y).float().mean())
    acc_train = float((noisy.argmax(1) == y).float().mean())
    kinds = sorted({type(m).__name__ for m in net.modules() if isinstance(m, MODE_DEPENDENT)})
    kinds = kinds or ["functional dropout or batch-norm"]
    return [Finding(
        "mode-dependent-layers", "note",
        f"this model has layers that behave differently in training mode ({', '.join(kinds)})",
        {"accuracy_in_eval_mode": acc_eval, "accuracy_in_training_mode": acc_train,
         "images": len(y)},
        "Evaluate it only after model.eval(); in training mode its predictions change (see the "
        "accuracies). mnistlab evaluate and mnistlab predict do this for you.",
        "model.eval()\nwith torch.no_grad():\n    logits = model(x)")]
