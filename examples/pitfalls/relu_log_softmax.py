"""Pitfall: an activation on the logits, hidden under the final log_softmax (NLL loss).

The official PyTorch example ends in `F.log_softmax(x, dim=1)` and trains with NLLLoss. Put a
ReLU (or a sigmoid) between the last layer and the log_softmax and the output still looks like
proper log-probabilities, so nothing seems wrong. It is the ReLU-on-the-output bug in
disguise: a class whose logit is clamped to 0 gets no gradient, and some runs lose whole
classes. A sigmoid instead squashes the logits into [0, 1]: no class can get a probability
above e / (e + 9) = 0.232, so the loss cannot fall below 1.461. Diagnose:
    mnistlab doctor examples/pitfalls/relu_log_softmax.py:Net --loss nll --lr 0.1
    mnistlab doctor examples/pitfalls/relu_log_softmax.py:sequential_net --loss nll --lr 0.1
    mnistlab doctor examples/pitfalls/relu_log_softmax.py:SigmoidNet --loss nll --lr 0.1
    mnistlab doctor examples/pitfalls/relu_log_softmax.py:FixedNet --loss nll --lr 0.1
"""

import sys

import torch
import torch.nn.functional as F
from common import fit, mnist
from torch import nn


class Net(nn.Module):
    """A subclass with functional calls, as in the PyTorch example."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(x.flatten(1)))
        return F.log_softmax(F.relu(self.fc2(x)), dim=1)  # the bug: a ReLU on the logits


def sequential_net() -> nn.Sequential:
    """The same bug in a factory function building a Sequential."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10),
                         nn.ReLU(),  # the bug
                         nn.LogSoftmax(dim=1))


class SigmoidNet(Net):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(x.flatten(1)))
        return F.log_softmax(torch.sigmoid(self.fc2(x)), dim=1)  # the bug: squashed to [0, 1]


class FixedNet(Net):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(x.flatten(1)))
        return F.log_softmax(self.fc2(x), dim=1)  # log-probabilities of free logits


def symptoms(model: nn.Module) -> str:
    """Test images whose ten outputs are all equal (every logit clamped to 0: a uniform
    guess), classes never predicted, and the test loss."""
    x_test, y_test = mnist()[2:]
    with torch.no_grad():
        out = model.eval()(x_test)
    uniform = int((out.max(1).values - out.min(1).values < 1e-6).sum())
    never = sorted(set(range(10)) - set(out.argmax(1).tolist()))
    loss = F.nll_loss(out, y_test).item()
    return (f"test loss {loss:.3f}; {uniform} test images with all 10 outputs equal; classes "
            f"never predicted: {never}")


if __name__ == "__main__":
    # python relu_log_softmax.py [SEED ...]   (default: seeds 0-4)
    seeds = [int(a) for a in sys.argv[1:]] or list(range(5))
    for name, build in (("ReLU under log_softmax", Net), ("Sequential, ReLU", sequential_net),
                        ("sigmoid under log_softmax", SigmoidNet), ("fixed", FixedNet)):
        accuracies = []
        for seed in seeds:
            torch.manual_seed(seed)
            model = build()
            accuracies.append(fit(model, lr=0.1, seed=seed, loss_fn=F.nll_loss,
                                  label=f"{name}, seed {seed}"))
            print("   ", symptoms(model))
        print(f"{name}: " + ", ".join(f"{a:.2%}" for a in accuracies)
              + f"; worst {min(accuracies):.2%}")
