"""Check 9: is the model evaluated in training mode?

Dropout and batch-norm behave differently in training mode: dropout zeroes random units,
batch-norm normalises with the batch's own statistics. An evaluation that forgets
`model.eval()` gets noisy, batch-dependent and usually worse predictions. We hand the user's
evaluation function a copy of the model in training mode, as it is right after a training
epoch, and watch: which modules ran in training mode, and whether the output changes from
one call to the next, or differs from the output in eval mode.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from mnistlab.doctor.findings import Finding
from mnistlab.doctor.loading import _one_line
from mnistlab.errors import MnistlabError

EvalFn = Callable[[nn.Module, torch.Tensor], Any]
# Layers whose output depends on model.training (functional dropout is caught by its effect).
MODE_DEPENDENT = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._NormBase)


def _as_tensor(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().float().cpu()
    return torch.as_tensor(value, dtype=torch.float32)


def _mode_dependent(net: nn.Module, x: torch.Tensor) -> float:
    """Largest change of the output between training and eval mode (and between two
    training-mode calls), relative to the output's scale."""
    with torch.no_grad():
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
        with torch.no_grad():
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
    with torch.no_grad():
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
    with torch.no_grad():
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
