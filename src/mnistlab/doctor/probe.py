"""Short training runs on copies of the model: the learning-rate probe and before/after fixes.

Every run starts from the same weights (a deep copy) and the same batches, so that two runs
differ only in what is being compared: the learning rate, or the initialisation.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mnistlab.doctor.findings import Finding
from mnistlab.doctor.losses import Loss

OptimizerFactory = Callable[[Iterable[nn.Parameter], float], torch.optim.Optimizer]
Batch = tuple[torch.Tensor, torch.Tensor]


def default_optimizer(params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


@dataclass
class RunResult:
    lr: float
    start: float  # loss on the fixed batch before training
    end: float  # and after
    diverged: bool

    @property
    def drop(self) -> float:
        """Relative loss reduction; negative when the loss rose."""
        if not (math.isfinite(self.start) and math.isfinite(self.end)):
            return -math.inf
        return (self.start - self.end) / max(abs(self.start), 1e-12)


def fixed_batch_loss(model: nn.Module, batch: Batch, loss: Loss) -> float:
    # Training mode (BatchNorm with batch statistics), as during training; no gradient.
    with torch.no_grad():
        return float(loss(model(batch[0]), batch[1]))


def short_run(model: nn.Module, batches: Sequence[Batch], check: Batch, loss: Loss,
              optimizer_factory: OptimizerFactory, lr: float, steps: int,
              seed: int = 0) -> RunResult:
    net = copy.deepcopy(model).train()
    torch.manual_seed(seed)  # the same dropout masks in every run
    start = fixed_batch_loss(net, check, loss)
    opt = optimizer_factory(net.parameters(), lr)
    diverged = False
    for i in range(steps):
        x, y = batches[i % len(batches)]
        value = loss(net(x), y)
        if not torch.isfinite(value):
            diverged = True
            break
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
    end = math.nan if diverged else fixed_batch_loss(net, check, loss)
    # A spike above twice the start (or 2 nats higher) within a few steps is not noise.
    if not math.isfinite(end) or (math.isfinite(start) and end > max(2 * start, start + 2)):
        diverged = True
    return RunResult(lr, start, end, diverged)


def lr_grid(lr: float) -> list[float]:
    """Decades around the user's lr: 1/100 of it to 10 times it."""
    return [lr * 10.0**k for k in (-2, -1, 0, 1)]


MAX_RUNS = 6
# Extra runs (higher rates on a plateau, longer runs) only when the time they are estimated
# to take, from the steps already timed, keeps the whole probe within this budget.
PROBE_BUDGET_S = 4.0


def lr_probe(model: nn.Module, batches: Sequence[Batch], check: Batch, loss: Loss,
             optimizer_factory: OptimizerFactory, lr: float, steps: int,
             optimizer_name: str, warmup_lr: float | None = None
             ) -> tuple[dict[str, Any], list[Finding]]:
    """Train copies for `steps` steps at rates around `lr`. With a warm-up (`warmup_lr`, the
    rate of the first steps), divergence is judged at the warm-up rate, since the peak is
    only reached once the model has settled; "too small" is judged at the peak."""
    timings: list[tuple[float, int]] = []  # (seconds, steps) of every run

    def run(rate: float, n: int = steps) -> RunResult:
        t = time.perf_counter()
        result = short_run(model, batches, check, loss, optimizer_factory, rate, n)
        timings.append((time.perf_counter() - t, n))
        return result

    def affordable(extra_steps: int) -> bool:
        # The first run also pays one-off costs (the optimizer's first step imports
        # torch._dynamo: seconds), so the fastest run sets the price of a step.
        per_step = min(t / n for t, n in timings)
        spent = sum(t for t, _ in timings[1:]) + per_step * timings[0][1]
        return spent + extra_steps * per_step <= PROBE_BUDGET_S

    grid = lr_grid(lr)
    if warmup_lr is not None and not any(math.isclose(warmup_lr, g) for g in grid):
        grid = sorted([*grid, warmup_lr])
    runs = [run(g) for g in grid]
    yours = next(r for r in runs if math.isclose(r.lr, lr))
    first = (yours if warmup_lr is None
             else next(r for r in runs if math.isclose(r.lr, warmup_lr)))
    # Nothing moved the loss yet: look higher, until something does or diverges.
    while (len(runs) < MAX_RUNS and not runs[-1].diverged
           and max(r.drop for r in runs) < 0.1
           and affordable(steps)):
        runs.append(run(runs[-1].lr * 10))
    good = [r for r in runs if not r.diverged and r.drop > 0]
    best = max(good, key=lambda r: r.drop, default=None)
    suggested = usable_range(good, best)
    longer: list[RunResult] = []
    if suggested is None and affordable(6 * steps):
        # A plateau (deep nets without BatchNorm): give the two largest stable rates 3x the
        # steps; what they do decides the suggestion, and nothing else.
        stable = sorted((r for r in runs if not r.diverged and r.drop > -0.02),
                        key=lambda r: r.lr)[-2:]
        longer = [run(r.lr, 3 * steps) for r in stable]
        suggested = usable_range([r for r in longer if r.drop > 0], None)
    measurements = {
        "optimizer": optimizer_name, "lr": lr, "warmup_lr": warmup_lr, "steps": steps,
        "batch_size": len(batches[0][1]), "start_loss": yours.start,
        "points": [{"lr": r.lr, "loss": r.end, "drop": r.drop, "diverged": r.diverged}
                   for r in runs],
        "suggested": suggested, "best_lr": best.lr if best else None,
        "longer": [{"lr": r.lr, "loss": r.end, "drop": r.drop, "steps": 3 * steps}
                   for r in longer],
    }
    ev = {"lr": lr, "loss_before": yours.start, "loss_after": yours.end,
          "steps": steps, "suggested_range": suggested,
          "best_lr_in_probe": best.lr if best else None,
          "best_loss_after": best.end if best else None}
    findings: list[Finding] = []
    if first.diverged:
        exploded = not math.isfinite(first.end) or first.end > 10 * first.start
        findings.append(Finding(
            "lr-diverges", "error" if exploded else "warning",
            f"lr {first.lr:g} makes the loss {'NaN' if not math.isfinite(first.end) else 'rise'}"
            f" within {steps} steps",
            {**ev, "lr": first.lr, "loss_after": first.end},
            "Each step overshoots: the loss climbs or overflows instead of falling, and the "
            "weights end up as NaN or in a region the model never leaves.",
            _lr_fix(suggested, best, optimizer_name)))
    elif yours.drop < -0.02 and (warmup_lr is None or first.drop < -0.02):
        # Not a blow-up, but the rate the run starts at makes the loss worse, not better.
        findings.append(Finding(
            "lr-raises-loss", "warning",
            f"lr {first.lr:g} raises the loss: {first.start:.4g} -> {first.end:.4g} in "
            f"{steps} steps",
            {**ev, "lr": first.lr, "loss_after": first.end},
            "A rate that makes the loss rise from the model's starting point overshoots: "
            "training may recover, blow up later, or settle far above where a smaller rate "
            "gets.",
            _lr_fix(suggested, best, optimizer_name)))
    elif yours.drop < -0.02 and warmup_lr is not None:
        findings.append(Finding(
            "lr-raises-loss", "note",
            f"the peak lr {lr:g} raises the loss from a cold start ({yours.start:.4g} -> "
            f"{yours.end:.4g} in {steps} steps); the warm-up from {warmup_lr:g} is what makes "
            "it usable",
            ev,
            "One-cycle and warm-up schedules reach the peak rate only after the model has "
            "settled; from the starting weights the peak overshoots.",
            "keep the warm-up (mnistlab train's onecycle schedule), or lower --lr"))
    elif best is not None and best.drop > 0.1 and yours.drop < 0.1 * best.drop:
        findings.append(Finding(
            "lr-too-small", "warning",
            f"lr {lr:g} barely moves the loss ({yours.drop:.1%} in {steps} steps; lr "
            f"{best.lr:g} gets {best.drop:.1%})",
            ev,
            "Steps this small waste the training budget: the model will need many times more "
            "epochs to reach the accuracy a larger rate reaches in one.",
            _lr_fix(suggested, best, optimizer_name)))
    return measurements, findings


def usable_range(good: list[RunResult], best: RunResult | None) -> tuple[float, float] | None:
    """The rates whose loss drop is at least half the best one's, if the best is real (2%)."""
    best = best or max(good, key=lambda r: r.drop, default=None)
    if best is None or best.drop <= 0.02:
        return None
    usable = [r.lr for r in good if r.drop >= 0.5 * best.drop]
    return min(usable), max(usable)


def _lr_fix(suggested: tuple[float, float] | None, best: RunResult | None,
            optimizer_name: str) -> str:
    if suggested is None or best is None:
        return ("no rate in the probe lowered the loss: fix the errors above first "
                "(initialisation, output layer, inputs), then run the doctor again")
    lo, hi = suggested
    rate = f"in {lo:g} .. {hi:g}" if lo != hi else f"near {lo:g}"
    return (f"use a learning rate {rate} with {optimizer_name}, e.g.\n"
            f"optimizer = {optimizer_name}(model.parameters(), lr={best.lr:g})\n"
            f"(mnistlab train ... --lr {best.lr:g})")
