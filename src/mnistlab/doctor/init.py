"""Check 4: does the model start from a point it can learn from?

At initialisation a 10-class classifier should be unsure of everything: its loss is
ln 10 = 2.303 and its logits are small. We measure the initial loss, every layer's activation
statistics and weight-gradient norms (see `trace`), then re-initialise a copy the default way
and measure again, so that the recommendation comes with its before and after numbers.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mnistlab.doctor.findings import Finding
from mnistlab.doctor.losses import Loss
from mnistlab.doctor.trace import (
    LayerTrace,
    Normalisation,
    finite,
    record_gradients,
    trace_forward,
)

# Thresholds, chosen with the zoo at its defaults far inside them (see tests/test_doctor*.py).
LOSS_WARN, LOSS_ERROR = 1.5, 2.5  # times ln(classes)
SCALE_EXPLODE = 50.0  # a layer's output std over the network's input std
SCALE_VANISH = 1e-3
# Fraction of a layer's input units that are 0 on the whole batch. With default init a deep
# plain-ReLU stack (the zoo's vgg-small) has ~50% in its last layers: the signal has shrunk
# and the biases decide, but the units revive as the layers before them learn.
DEAD_WARN, DEAD_ERROR = 0.7, 0.95
SATURATED_WARN = 0.5
GRAD_RATIO_WARN = 1e3  # spread of grad/weight across layers


@dataclass
class InitStats:
    loss: float
    logits_std: float
    layers: list[LayerTrace]
    output: torch.Tensor  # detached
    last_op: str | None
    normalisation: Normalisation | None = None  # the softmax/log_softmax the output came from

    @property
    def grad_spread(self) -> float | None:
        """Largest over smallest grad/weight ratio across layers (1 = perfectly even)."""
        ratios = [r for r in (layer.grad_to_weight for layer in self.layers) if finite(r)]
        if len(ratios) < 2:
            return None
        return max(ratios) / max(min(ratios), 1e-30)

    def summary(self) -> dict[str, Any]:
        return {"initial_loss": self.loss, "logits_std": self.logits_std,
                "max_layer_out_std": max((la.out_std for la in self.layers), default=None),
                "max_dead_fraction": max((la.dead_fraction for la in self.layers[1:]),
                                         default=0.0),
                "max_saturated_fraction": max((la.saturated_fraction for la in self.layers),
                                              default=0.0),
                "grad_to_weight_spread": self.grad_spread}


def measure(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], loss: Loss,
            seed: int = 0) -> InitStats:
    """One traced forward and backward on `model` (which the caller has already copied)."""
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    x, y = batch
    trace = trace_forward(model, x)
    value = loss(trace.output, y)
    if torch.isfinite(value):
        value.backward()
    record_gradients(trace.layers)
    out = trace.output.detach().float()
    model.zero_grad(set_to_none=True)
    return InitStats(float(value.detach()), float(out.std()), trace.layers, out, trace.last_op,
                     trace.normalisation)


def reinitialised(model: nn.Module, layers: list[LayerTrace]) -> nn.Module:
    """A copy with PyTorch's default initialisation on every layer that has one, and Kaiming
    (He) initialisation on raw weight parameters (`x @ self.W`), with the fan-in the trace
    observed; the last layer gets the default small scale so that logits start near 0."""
    net = copy.deepcopy(model)
    for module in net.modules():
        if hasattr(module, "reset_parameters") and any(True for _ in
                                                       module.parameters(recurse=False)):
            module.reset_parameters()
    params = dict(net.named_parameters())
    owners = {id(p): m for m in net.modules() for p in m.parameters(recurse=False)}
    with torch.no_grad():
        for i, layer in enumerate(layers):
            p = params.get(layer.param)
            if p is None or hasattr(owners.get(id(p)), "reset_parameters"):
                continue
            last = i == len(layers) - 1
            std = math.sqrt((1 / 3 if last else 2.0) / layer.fan_in)
            p.normal_(0.0, std)
    return net


def expected_loss(loss: Loss, form: str, classes: int) -> float | None:
    """ln(classes) where the loss reads the output as logits or log-probabilities."""
    if (loss.kind == "cross_entropy" and form in ("logits", "log_softmax")) or (
            loss.kind == "nll" and form == "log_softmax"):
        return math.log(classes)
    return None


INIT_FIX = """\
# Let PyTorch initialise: nn.Linear / nn.Conv2d already use a scaled (Kaiming-uniform) init.
self.fc1 = nn.Linear(784, 200)                   # instead of nn.Parameter(torch.randn(784, 200))
# Raw weights: scale by the fan-in (Kaiming/He for ReLU layers)
self.W1 = nn.Parameter(torch.randn(784, 200) * (2 / 784) ** 0.5)
# or: nn.init.kaiming_normal_(self.fc1.weight, nonlinearity="relu")"""


def check_init(before: InitStats, after: InitStats | None, form: str, loss: Loss,
               classes: int, runs: dict[str, Any] | None) -> list[Finding]:
    """Findings about the starting point, each with the re-initialised copy's numbers."""
    findings: list[Finding] = []
    fixed = ({"before": before.summary(), "after_reinit": after.summary()}
             if after is not None else {})
    if runs:
        fixed["short_training"] = runs
    if not math.isfinite(before.loss) or not torch.isfinite(before.output).all():
        return [Finding(
            "non-finite-at-init", "error", "the output or the loss is NaN/inf before training",
            {"initial_loss": before.loss, "logits_std": before.logits_std, **fixed},
            "Nothing can be learnt from a NaN: every gradient is NaN too. Usually weights far "
            "too large for the input (overflow), or a log/divide of 0 in forward().",
            INIT_FIX)]
    expected = expected_loss(loss, form, classes)
    if expected is not None and before.loss > LOSS_WARN * expected:
        severity = "error" if before.loss > LOSS_ERROR * expected else "warning"
        findings.append(Finding(
            "initial-loss-too-high", severity,
            f"the initial loss is {before.loss:.4g}, {before.loss / expected:.1f} times "
            f"ln {classes} = {expected:.3f}",
            {"initial_loss": before.loss, "expected": expected,
             "logits_std": before.logits_std, **fixed},
            "An untrained classifier should spread its bets evenly (loss ln 10). A much larger "
            "loss means huge random logits: the model is confidently wrong and the softmax "
            "saturated, so the gradients are either zero or enormous; the loss falls from its "
            "huge start but stays far above where a well-initialised copy begins, and accuracy "
            "stays near chance.",
            INIT_FIX))
    layers = before.layers
    first_in = layers[0].in_std if layers and layers[0].in_std > 0 else 1.0
    worst = max(layers, key=lambda la: la.out_std, default=None)
    if worst is not None and worst.out_std > SCALE_EXPLODE * first_in:
        findings.append(Finding(
            "activations-explode", "error" if worst.out_std > 1e3 * first_in else "warning",
            f"activations grow through the layers: {worst.layer} outputs std "
            f"{worst.out_std:.4g} for inputs of std {first_in:.3g}",
            {"out_std_per_layer": [la.out_std for la in layers], **fixed},
            "Weights that are not scaled by 1/sqrt(fan-in) multiply the signal's scale by "
            "about sqrt(fan-in) per layer. Huge pre-activations saturate the softmax (and any "
            "tanh/sigmoid) and make the first steps blow up.",
            INIT_FIX))
    small = min(layers[1:], key=lambda la: la.in_std, default=None)
    if small is not None and 0 <= small.in_std < SCALE_VANISH * first_in:
        findings.append(Finding(
            "activations-vanish", "warning",
            f"activations shrink to nothing: {small.layer} receives inputs of std "
            f"{small.in_std:.3g}",
            {"in_std_per_layer": [la.in_std for la in layers], **fixed},
            "When every layer shrinks the signal, the deep layers see almost constant inputs "
            "and the early layers get almost no gradient.",
            INIT_FIX))
    dead = max(layers[1:], key=lambda la: la.dead_fraction, default=None)
    if dead is not None and dead.dead_fraction >= DEAD_WARN:
        findings.append(Finding(
            "dead-relu", "error" if dead.dead_fraction >= DEAD_ERROR else "warning",
            f"{dead.dead_fraction:.0%} of the units feeding {dead.layer} are 0 for every image",
            {"dead_fraction_per_layer": [la.dead_fraction for la in layers],
             "zero_fraction_per_layer": [la.zero_fraction for la in layers], **fixed},
            "A ReLU unit that is negative for every input outputs 0 and gets no gradient, so "
            "it never recovers. Usually a large negative bias or a badly scaled init.",
            INIT_FIX + "\n# or nn.LeakyReLU(0.01) / lower the learning rate"))
    sat = max(layers, key=lambda la: la.saturated_fraction, default=None)
    if sat is not None and sat.saturated_fraction >= SATURATED_WARN:
        findings.append(Finding(
            "saturated-activations", "warning",
            f"{sat.saturated_fraction:.0%} of the {sat.bounded} values feeding {sat.layer} sit "
            "at the bounds",
            {"saturated_fraction_per_layer": [la.saturated_fraction for la in layers],
             **fixed},
            "A saturated tanh or sigmoid has slope ~0: gradients through it vanish and the "
            "layers before it stop learning.",
            INIT_FIX + "\n# for tanh: nn.init.xavier_uniform_(layer.weight)"))
    spread = before.grad_spread
    if spread is not None and spread > GRAD_RATIO_WARN:
        ratios = [la.grad_to_weight for la in layers]
        vanishing = finite(ratios[0]) and ratios[0] == min(r for r in ratios if finite(r))
        findings.append(Finding(
            "gradients-vanish" if vanishing else "gradients-explode", "warning",
            f"relative gradient sizes differ by {spread:.3g}x across the layers at step 0",
            {"grad_to_weight_per_layer": ratios,
             "grad_norm_per_layer": [la.grad_norm for la in layers], **fixed},
            "One learning rate must suit every layer. When some layers' gradients are 1000 "
            "times smaller relative to their weights, those layers do not learn at a rate that "
            "lets the others learn without diverging.",
            "# deep stacks of sigmoid/tanh: use ReLU, whose slope is 1, not at most 0.25\n"
            "nn.Linear(64, 64), nn.ReLU(),          # instead of nn.Sigmoid()\n"
            "# and/or normalise each layer: nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU()\n"
            "# with Kaiming init: nn.init.kaiming_normal_(layer.weight, nonlinearity='relu')"))
    return findings
