"""`keras.datasets.mnist/fashion_mnist.load_data()` and `keras.utils.to_categorical` (also
under `keras.utils.np_utils`, and as `tensorflow.keras`)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from mnistlab.doctor.standins import data as standin_data


def _loader(dataset: str, label: str):
    def load_data(path: str = "") -> tuple[tuple[np.ndarray, np.ndarray],
                                           tuple[np.ndarray, np.ndarray]]:
        standin_data.USED.append(f"{label}.load_data")
        d = standin_data.load(dataset, None, True)
        return ((d.train_images.numpy().copy(), d.train_labels.numpy().astype(np.uint8)),
                (d.test_images.numpy().copy(), d.test_labels.numpy().astype(np.uint8)))
    return load_data


def to_categorical(y: Any, num_classes: int | None = None, dtype: str = "float32"
                   ) -> np.ndarray:
    y = np.asarray(y, dtype="int64")
    shape = y.shape
    if shape and shape[-1] == 1 and len(shape) > 1:
        shape = shape[:-1]
    y = y.reshape(-1)
    n = int(num_classes) if num_classes is not None else int(y.max()) + 1
    out = np.zeros((len(y), n), dtype=dtype)
    out[np.arange(len(y)), y] = 1
    return out.reshape(*shape, n)


def modules(prefix: str, parent: str | None = None) -> dict[str, ModuleType]:
    found: dict[str, ModuleType] = {}

    def module(name: str) -> ModuleType:
        m = ModuleType(name)
        m.__mnistlab_standin__ = True  # type: ignore[attr-defined]
        found[name] = m
        return m

    if parent:
        module(parent)
    root = module(prefix)
    datasets = module(f"{prefix}.datasets")
    utils = module(f"{prefix}.utils")
    np_utils = module(f"{prefix}.utils.np_utils")
    for short, name in (("mnist", "mnist"), ("fashion_mnist", "fashion-mnist")):
        m = module(f"{prefix}.datasets.{short}")
        m.load_data = _loader(name, f"{prefix}.datasets.{short}")  # type: ignore[attr-defined]
        setattr(datasets, short, m)
    utils.to_categorical = np_utils.to_categorical = to_categorical  # type: ignore[attr-defined]
    utils.np_utils = np_utils  # type: ignore[attr-defined]
    root.datasets, root.utils = datasets, utils  # type: ignore[attr-defined]
    if parent:
        found[parent].keras = root  # type: ignore[attr-defined]
    return found
