"""A faithful replica of the official PyTorch MNIST example (pytorch/examples, mnist/main.py).

torchvision is not available here, so its pieces are written out as torchvision does them:
`datasets.MNIST.__getitem__` makes a PIL image per sample (`Image.fromarray(img, mode="L")`),
`transforms.ToTensor` turns it into a float tensor in [0, 1], `transforms.Normalize` applies
`(x - 0.1307) / 0.3081`, and a `torch.utils.data.DataLoader` (no workers on a CPU, as in the
example) collates batches of 64. The network, Adadelta (lr 1.0), StepLR (gamma 0.7), NLL
loss on log_softmax, the loss.item() every 10 batches and the test loop are the example's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset


class Net(nn.Module):
    """Verbatim from the example."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


def to_tensor(pic: Image.Image) -> torch.Tensor:
    """torchvision.transforms.functional.to_tensor for a mode-L PIL image."""
    img = torch.from_numpy(np.array(pic, np.uint8, copy=True))
    img = img.view(pic.size[1], pic.size[0], 1).permute((2, 0, 1)).contiguous()
    return img.to(dtype=torch.get_default_dtype()).div(255)


def normalize(tensor: torch.Tensor, mean: float = 0.1307, std: float = 0.3081) -> torch.Tensor:
    """torchvision.transforms.functional.normalize (not in place, as Normalize() calls it)."""
    mean_t = torch.as_tensor([mean], dtype=tensor.dtype).view(-1, 1, 1)
    std_t = torch.as_tensor([std], dtype=tensor.dtype).view(-1, 1, 1)
    return tensor.sub(mean_t).div(std_t)


class PILDigits(Dataset):
    """torchvision.datasets.MNIST.__getitem__: one PIL image per sample, then the transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.data, self.targets = images, labels

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img, target = self.data[index], int(self.targets[index])
        img = Image.fromarray(img.numpy(), mode="L")
        return normalize(to_tensor(img)), target


def loaders(train_images: torch.Tensor, train_labels: torch.Tensor, test_images: torch.Tensor,
            test_labels: torch.Tensor) -> tuple[DataLoader, DataLoader]:
    train = DataLoader(PILDigits(train_images, train_labels), batch_size=64, shuffle=True)
    test = DataLoader(PILDigits(test_images, test_labels), batch_size=1000)
    return train, test


def train_epoch(model: nn.Module, batches: Iterable, optimizer: torch.optim.Optimizer,
                max_batches: int | None = None) -> tuple[float, int]:
    """The example's train(): returns (seconds, images)."""
    model.train()
    start, images = time.perf_counter(), 0
    for batch_idx, (data, target) in enumerate(batches):
        if max_batches is not None and batch_idx >= max_batches:
            break
        optimizer.zero_grad()
        output = model(data)
        loss = F.nll_loss(output, target)
        loss.backward()
        optimizer.step()
        images += len(target)
        if batch_idx % 10 == 0:
            loss.item()  # the example prints it every 10 batches
    return time.perf_counter() - start, images


@torch.no_grad()
def test(model: nn.Module, batches: Iterable) -> float:
    """The example's test(): accuracy on the test set."""
    model.eval()
    correct = total = 0
    for data, target in batches:
        output = model(data)
        pred = output.argmax(dim=1, keepdim=True)
        correct += pred.eq(target.view_as(pred)).sum().item()
        total += len(target)
    return correct / total


def run(train_batches: Callable[[], Iterable], test_batches: Callable[[], Iterable],
        epochs: int, max_batches: int | None = None, seed: int = 1,
        stop_at: float | None = None,
        each_epoch: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
        ) -> list[dict[str, float]]:
    """The example's main loop for `epochs` epochs: per epoch seconds, images/s, accuracy.
    `stop_at`: stop after the first epoch whose test accuracy reaches it (the benchmark's
    time to 99%; the example itself always runs its 14 epochs). Each epoch runs inside
    `each_epoch()`, e.g. a shared machine's lock held one epoch at a time."""
    torch.manual_seed(seed)
    model = Net()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    rows = []
    for epoch in range(1, epochs + 1):
        with each_epoch():
            seconds, images = train_epoch(model, train_batches(), optimizer, max_batches)
            accuracy = test(model, test_batches())
        rows.append({"epoch": epoch, "seconds": seconds, "images": images,
                     "images_per_s": images / seconds, "test_accuracy": accuracy})
        scheduler.step()
        if stop_at is not None and accuracy >= stop_at:
            break
    return rows
