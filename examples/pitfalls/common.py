"""The training loop every pitfall script shares: plain PyTorch, as a tutorial would write it.

Real MNIST comes from mnistlab.data (set MNISTLAB_DATA or let it download). Only the model,
the loss and the batch size differ between a broken script and its fix.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.data.dataset import load_dataset

MEAN, STD = 0.1307, 0.3081


class MLP(nn.Module):
    """784 -> 128 -> 10, returning logits: the correct baseline the pitfalls break."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(),
                                    nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def mnist(normalize: bool = True) -> tuple[torch.Tensor, ...]:
    data = load_dataset("mnist")

    def prep(images: torch.Tensor) -> torch.Tensor:
        x = images.unsqueeze(1).float() / 255.0
        return (x - MEAN) / STD if normalize else x

    return (prep(data.train_images), data.train_labels, prep(data.test_images),
            data.test_labels)


def fit(model: torch.nn.Module, *, lr: float, batch_size: int = 64, epochs: int = 1,
        loss_fn=F.cross_entropy, normalize: bool = True, seed: int = 0,
        label: str = "") -> float:
    """Train with SGD (momentum 0.9), shuffling every epoch; print and return test accuracy."""
    torch.manual_seed(seed)
    x, y, x_test, y_test = mnist(normalize)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(y))
        for i in range(0, len(y), batch_size):
            idx = order[i : i + batch_size]
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"{label} epoch {epoch + 1}/{epochs}: last batch loss {loss.item():.4f}")
    accuracy = test_accuracy(model, x_test, y_test)
    print(f"{label}: test accuracy {accuracy:.2%} ({time.perf_counter() - start:.1f} s)")
    return accuracy


def test_accuracy(model: torch.nn.Module, x_test: torch.Tensor, y_test: torch.Tensor) -> float:
    """Accuracy in eval mode, as every evaluation should be run."""
    model.eval()
    with torch.no_grad():
        return (model(x_test).argmax(1) == y_test).float().mean().item()
