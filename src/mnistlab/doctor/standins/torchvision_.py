"""`torchvision.datasets.MNIST/FashionMNIST/KMNIST` and `torchvision.transforms` (ToTensor,
Normalize, Compose, Lambda), as far as digit-classification scripts use them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from mnistlab.doctor.standins import data as standin_data

MNIST_CLASSES = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five",
                 "6 - six", "7 - seven", "8 - eight", "9 - nine"]


class _DigitDataset(torch.utils.data.Dataset):
    dataset_name = "mnist"
    classes: ClassVar[list[str]] = MNIST_CLASSES

    def __init__(self, root: Any = "data", train: bool = True,
                 transform: Callable | None = None, target_transform: Callable | None = None,
                 download: bool = False) -> None:
        standin_data.USED.append(f"torchvision.datasets.{type(self).__name__}")
        self.root, self.train = str(root), train
        self.transform, self.target_transform = transform, target_transform
        data = standin_data.load(self.dataset_name, self.root, download, torchvision=True)
        self.data = data.train_images if train else data.test_images
        self.targets = data.train_labels if train else data.test_labels

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        img: Any = Image.fromarray(self.data[index].numpy())
        target: Any = int(self.targets[index])
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    @property
    def class_to_idx(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}

    def __repr__(self) -> str:
        return (f"Dataset {type(self).__name__} (mnistlab stand-in)\n    Number of datapoints: "
                f"{len(self)}\n    Root location: {self.root}\n    Split: "
                f"{'Train' if self.train else 'Test'}")


class MNIST(_DigitDataset):
    pass


class FashionMNIST(_DigitDataset):
    dataset_name = "fashion-mnist"
    classes: ClassVar[list[str]] = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


class KMNIST(_DigitDataset):
    dataset_name = "kmnist"
    classes: ClassVar[list[str]] = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]


class ToTensor:
    """PIL image or HxW(xC) uint8 array -> float tensor (C, H, W) in [0, 1]."""

    def __call__(self, pic: Any) -> torch.Tensor:
        arr = np.array(pic)  # a writable copy
        if arr.ndim == 2:
            arr = arr[:, :, None]
        t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()
        return t.float().div(255) if t.dtype == torch.uint8 else t.float()

    def __repr__(self) -> str:
        return "ToTensor()"


class PILToTensor:
    def __call__(self, pic: Any) -> torch.Tensor:
        arr = np.asarray(pic)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()


class Normalize(torch.nn.Module):
    def __init__(self, mean: Sequence[float] | float, std: Sequence[float] | float,
                 inplace: bool = False) -> None:
        super().__init__()
        self.mean, self.std, self.inplace = mean, std, inplace

    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        mean = torch.as_tensor(self.mean, dtype=tensor.dtype).reshape(-1, 1, 1)
        std = torch.as_tensor(self.std, dtype=tensor.dtype).reshape(-1, 1, 1)
        if self.inplace:
            return tensor.sub_(mean).div_(std)
        return (tensor - mean) / std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class Compose:
    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms = list(transforms)

    def __call__(self, img: Any) -> Any:
        for t in self.transforms:
            img = t(img)
        return img


class Lambda:
    def __init__(self, lambd: Callable) -> None:
        self.lambd = lambd

    def __call__(self, img: Any) -> Any:
        return self.lambd(img)


def modules() -> dict[str, ModuleType]:
    root = ModuleType("torchvision")
    datasets = ModuleType("torchvision.datasets")
    transforms = ModuleType("torchvision.transforms")
    for name in ("MNIST", "FashionMNIST", "KMNIST"):
        setattr(datasets, name, globals()[name])
    for name in ("ToTensor", "PILToTensor", "Normalize", "Compose", "Lambda"):
        setattr(transforms, name, globals()[name])
    root.datasets, root.transforms = datasets, transforms  # type: ignore[attr-defined]
    root.__version__ = "0.0+mnistlab-standin"  # type: ignore[attr-defined]
    found = {"torchvision": root, "torchvision.datasets": datasets,
             "torchvision.transforms": transforms}
    for m in found.values():
        m.__mnistlab_standin__ = True  # type: ignore[attr-defined]
    return found
