"""Pitfall: functional dropout without `training=self.training` stays on after model.eval().

`F.dropout(x, 0.5)` takes a `training` argument that defaults to True; it knows nothing of
model.eval(). Training is unaffected, but every evaluation drops half the units at random:
the same model scores differently each time it is tested, lower than it should, and a served
model answers the same digit differently from call to call. The fix changes no weight, so each
run here trains once and then evaluates the same weights both ways. Diagnose:
    mnistlab doctor examples/pitfalls/dropout_eval.py:Net --lr 0.01
    mnistlab doctor examples/pitfalls/dropout_eval.py:ConvNet --lr 0.05
    mnistlab doctor examples/pitfalls/dropout_eval.py:FixedNet --lr 0.01
    mnistlab doctor examples/pitfalls/dropout_eval.py:FixedConvNet --lr 0.05
"""

import torch
import torch.nn.functional as F
from common import fit, mnist, test_accuracy
from torch import nn


class Net(nn.Module):
    """784-512-10 with dropout on the hidden layer."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 512)
        self.fc2 = nn.Linear(512, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(F.dropout(x, 0.5))  # the bug: training defaults to True


class FixedNet(Net):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(F.dropout(x, 0.5, training=self.training))  # follows model.eval()


class ConvNet(nn.Module):
    """Two conv layers, as in older versions of the PyTorch example, with dropout2d."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 5)
        self.conv2 = nn.Conv2d(16, 32, 5)
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, 10)

    def features(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(F.dropout2d(self.conv2(x), 0.25, training=training)), 2)
        return F.relu(self.fc1(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x, training=True)  # the bug: always on
        return self.fc2(F.dropout(x, 0.5))  # and again


class FixedConvNet(ConvNet):
    def __init__(self) -> None:
        super().__init__()
        self.dropout = nn.Dropout(0.5)  # a module follows model.train() / model.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.features(x, training=self.training)))


def flips(a: nn.Module, x: torch.Tensor) -> float:
    """Fraction of test images whose prediction changes between two evaluations."""
    with torch.no_grad():
        return (a.eval()(x).argmax(1) != a(x).argmax(1)).float().mean().item()


if __name__ == "__main__":
    x_test, y_test = mnist()[2:]
    for broken_cls, fixed_cls, lr in ((Net, FixedNet, 0.01), (ConvNet, FixedConvNet, 0.05)):
        torch.manual_seed(0)
        broken = broken_cls()
        first = fit(broken, lr=lr, label=f"{broken_cls.__name__} (dropout on at test time)")
        second = test_accuracy(broken, x_test, y_test)
        changed = flips(broken, x_test)
        fixed = fixed_cls()
        fixed.load_state_dict(broken.state_dict())  # the very same weights
        right = test_accuracy(fixed, x_test, y_test)
        print(f"{broken_cls.__name__}: evaluated twice {first:.2%} and {second:.2%} "
              f"({changed:.2%} of predictions change between the two); the same weights with "
              f"the fix ({fixed_cls.__name__}): {right:.2%}")
