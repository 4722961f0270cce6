"""Load a user's model from `path/to/net.py:Name` (a module class or a factory function).

The file is imported as a module with its own name (not `__main__`), so a script that trains
under `if __name__ == "__main__":` only defines its model here. Every failure is one line.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from mnistlab.errors import MnistlabError


def split_spec(spec: str) -> tuple[Path, str]:
    path, sep, name = spec.rpartition(":")
    if not sep or not path or not name:
        raise MnistlabError(f"{spec}: expected FILE.py:NAME, e.g. examples/pitfalls/"
                            "relu_output.py:Net")
    return Path(path), name


def load_attribute(spec: str) -> Callable[..., Any]:
    """`file.py:name` -> the object `name` defined in that file."""
    path, name = split_spec(spec)
    if not path.is_file():
        raise MnistlabError(f"{path}: no such file")
    module_name = f"mnistlab_user_{abs(hash(path.resolve()))}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise MnistlabError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module  # dataclasses, pickling and typing look it up there
    sys.path.insert(0, str(path.parent.resolve()))  # so the file's sibling imports work
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:  # the user's code: any error becomes one line naming the file
        del sys.modules[module_name]
        raise MnistlabError(f"{path}: importing it failed: {_one_line(e)}") from None
    finally:
        sys.path.remove(str(path.parent.resolve()))
    if not hasattr(module, name):
        found = sorted(k for k, v in vars(module).items() if not k.startswith("_")
                       and callable(v) and getattr(v, "__module__", None) == module_name)
        raise MnistlabError(f"{path}: defines no '{name}' (it defines: "
                            f"{', '.join(found) or 'nothing callable'})")
    return getattr(module, name)


def load_user_model(spec: str, **kwargs: Any) -> nn.Module:
    """Build the model `file.py:Name` names: a class is instantiated, a function called."""
    factory = load_attribute(spec)
    if not callable(factory):
        raise MnistlabError(f"{spec}: is a {type(factory).__name__}, not a class or function")
    try:
        model = factory(**kwargs)
    except Exception as e:  # the user's constructor
        raise MnistlabError(f"{spec}: building the model failed: {_one_line(e)}") from None
    if not isinstance(model, nn.Module):
        raise MnistlabError(f"{spec}: returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__
