"""`--ema DECAY`: an exponential moving average of the weights, kept beside the trained ones.

After every optimizer step `average = decay * average + (1 - decay) * weights` (the first
step copies), over the parameters and the floating-point buffers (BatchNorm's running
statistics), so that the averaged model evaluates with statistics of its own kind. Integer
buffers (BatchNorm's `num_batches_tracked`) are copied: a count has no average.

When the average is on, the trainer validates, chooses the best epoch, tests and saves the
average: a checkpoint's `state_dict` holds it, so that evaluate, predict, export and serve
use it unchanged; the weights being trained travel in the checkpoint's `ema` entry
(`trained_state_dict`, with `decay` and `updates`) for an exact `--resume`.

Under torchrun each rank averages its own replica: DDP keeps the replicas' weights identical,
so the averages' weights are too (BatchNorm statistics differ slightly, as the replicas' do),
and rank 0 validates and saves, as without --ema.

This is `torch.optim.swa_utils.AveragedModel` with `get_ema_multi_avg_fn` and
`use_buffers=True`, computed the same way (one `_foreach_lerp_` per step; equal bit for bit,
tested), in a small class because AveragedModel regroups every tensor by device and dtype on
each step (for the `best` recipe's net on one AMD EPYC core: 250 us a step against 33 us
here, where a training step takes about 20 ms), and blends `num_batches_tracked` as if it
were a float.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from mnistlab.checkpoint import load_weights
from mnistlab.errors import MnistlabError
from mnistlab.train.config import check_decay


class WeightAverage:
    """The moving average of `model`'s weights and buffers, in its own copy of the model.

    The copy is made from the model as it will train (its device, fp32 weights, memory
    format: channels-last stays channels-last), so that the average is computed in fp32 and
    evaluates like the model; bf16 autocast changes activations, never the weights.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise MnistlabError(f"--ema {check_decay(decay)}")
        self.decay = decay
        self.updates = 0  # optimizer steps averaged so far
        self.source = model
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
            p.grad = None
        ours = {**dict(self.module.named_parameters()), **dict(self.module.named_buffers())}
        theirs = {**dict(model.named_parameters()), **dict(model.named_buffers())}
        # Built once: the optimizer updates the model's tensors in place, so these stay valid.
        pairs = [(ours[name], theirs[name].detach()) for name in ours]
        self._float = [(a, s) for a, s in pairs if a.is_floating_point()]
        self._other = [(a, s) for a, s in pairs if not a.is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        """Fold the model's current weights into the average (after an optimizer step)."""
        averaged = [a for a, _ in self._float]
        current = [s for _, s in self._float]
        if self.updates == 0:
            torch._foreach_copy_(averaged, current)
        else:
            torch._foreach_lerp_(averaged, current, 1 - self.decay)
        for a, s in self._other:
            a.copy_(s)
        self.updates += 1

    def copy_to(self, model: nn.Module) -> None:
        """Put the average into `model` (e.g. the trained model, once training is over)."""
        model.load_state_dict(self.module.state_dict())

    # ---- checkpoints -------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The checkpoint's `ema` entry: what `--resume` needs beyond the averaged weights
        (which are the checkpoint's `state_dict`)."""
        return {"decay": self.decay, "updates": self.updates,
                "trained_state_dict": self.source.state_dict()}

    def load_state(self, entry: dict[str, Any], averaged: dict[str, torch.Tensor],
                   source: str) -> None:
        """Restore from a checkpoint's `ema` entry and its `state_dict` (the average); that
        the entry is there, train.resume.plan_resume has checked before any work."""
        load_weights(self.source, entry["trained_state_dict"], source)
        load_weights(self.module, averaged, source)
        self.updates = int(entry["updates"])
