"""`ensemble`: several independently trained copies of one zoo model, read as one model.

`mnistlab train --members K` trains K members (other initial weights and batch order, the same
validation split; train/members.py) and saves them as this module. Its logits are the log of
the members' mean softmax, so softmax(ensemble(x)) is the average of their probabilities, and
every command that reads logits (eval, predict, the gate, export, serve) reads an ensemble as
it reads one model. It is not trained as one module: the members' losses would then be the
loss of their average, and members trained jointly that way learn to lean on each other
instead of each being right on its own.
"""

from __future__ import annotations

import json
import math

import torch
from torch import nn

from mnistlab.errors import MnistlabError
from mnistlab.models.registry import check_arguments, create_model, register_composite

MAX_MEMBERS = 16


def base_arguments(text: str) -> dict:
    """The members' model arguments, stored as a JSON object in a string (the checkpoint's
    model description holds only plain values): checked like any model's arguments."""
    try:
        args = json.loads(text) if text else {}
    except ValueError:
        raise MnistlabError(f"ensemble: base_args is not a JSON object: {text[:60]!r}") from None
    return args


@register_composite("ensemble", "K independently trained copies of a zoo model, softmax "
                                "averaged (built by train --members K)")
class Ensemble(nn.Module):
    def __init__(self, base: str = "fast", members: int = 2, base_args: str = "") -> None:
        super().__init__()
        if base == "ensemble":
            raise MnistlabError("ensemble: a member cannot itself be an ensemble")
        if not 1 <= members <= MAX_MEMBERS:
            raise MnistlabError(f"ensemble: members must be 1..{MAX_MEMBERS}, got {members}")
        kwargs = check_arguments(base, base_arguments(base_args), "ensemble member")
        self.members = nn.ModuleList(create_model(base, **kwargs) for _ in range(members))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # log of the mean probability, computed in log space so that no probability underflows
        logs = torch.stack([torch.log_softmax(m(x).float(), dim=1) for m in self.members])
        return torch.logsumexp(logs, dim=0) - math.log(len(self.members))
