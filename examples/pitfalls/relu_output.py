"""Pitfall: a ReLU after the last layer, before cross-entropy.

Logits must be able to go negative; after a ReLU they cannot, and a class whose logit is
clamped to 0 gets no gradient. Often the network still learns, but it is a lottery: some
seeds lose whole classes. So this script trains five seeds of each. Diagnose:
    mnistlab doctor examples/pitfalls/relu_output.py:Net --lr 0.1
    mnistlab doctor examples/pitfalls/relu_output.py:FixedNet --lr 0.1
"""

import torch
from common import fit, mnist
from torch import nn


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(x.flatten(1)))
        return torch.relu(self.fc2(x))  # the bug: the logits cannot be negative


class FixedNet(Net):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)  # raw logits; F.cross_entropy applies log-softmax


def symptoms(model: nn.Module) -> str:
    """The tell-tale signs on the test set: images whose outputs are all 0, classes that are
    never predicted."""
    x_test = mnist()[2]
    with torch.no_grad():
        out = model.eval()(x_test)
    all_zero = int((out == 0).all(1).sum())
    never = sorted(set(range(10)) - set(out.argmax(1).tolist()))
    return f"{all_zero} test images with all 10 outputs 0; classes never predicted: {never}"


if __name__ == "__main__":
    for name, cls in (("ReLU on the output", Net), ("fixed", FixedNet)):
        accuracies = []
        for seed in range(5):
            torch.manual_seed(seed)
            model = cls()
            accuracies.append(fit(model, lr=0.1, seed=seed, label=f"{name}, seed {seed}"))
            print("   ", symptoms(model))
        print(f"{name}: " + ", ".join(f"{a:.2%}" for a in accuracies)
              + f"; worst {min(accuracies):.2%}")
