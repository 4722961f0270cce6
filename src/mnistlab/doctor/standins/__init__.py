"""Offline stand-ins for torchvision's MNIST data sets and transforms and Keras's MNIST
loaders, for running a training script where those libraries are not installed.

They are backed by mnistlab's own data finding (`mnistlab.data.load_dataset`: the same
folders, cache and mirrors), and behave like the real ones in shape, dtype and value range:
torchvision data sets yield PIL images (`ToTensor()` makes float (1, 28, 28) tensors in
[0, 1]) and int labels; Keras's `load_data()` returns uint8 NumPy arrays (60000, 28, 28).
A stand-in downloads only where the real one would: torchvision with `download=True`,
Keras always (its `load_data` downloads on first use).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from types import ModuleType

from mnistlab.doctor.standins import keras_, torchvision_
from mnistlab.doctor.standins.data import USED


def missing(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):
        return True


def install() -> list[str]:
    """Put the stand-ins in sys.modules for each library that is not importable; return the
    names of the top-level packages stood in for."""
    USED.clear()
    modules: dict[str, ModuleType] = {}
    if missing("torchvision"):
        modules.update(torchvision_.modules())
    if missing("keras"):
        modules.update(keras_.modules("keras"))
    if missing("tensorflow"):
        modules.update(keras_.modules("tensorflow.keras", parent="tensorflow"))
    for name, module in modules.items():
        # A spec without an origin: importlib.util.find_spec (which torch._dynamo calls for
        # the libraries it skips) works, and nothing looks for files.
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        sys.modules[name] = module
    return sorted({n.split(".")[0] for n in modules})


def uninstall(names: list[str]) -> None:
    for key in list(sys.modules):
        if key.split(".")[0] in names and getattr(sys.modules[key], "__mnistlab_standin__",
                                                  False):
            del sys.modules[key]
