"""Models by name. Every model maps (N, 1, 28, 28) normalised images to (N, 10) logits.

A model built through `create_model` remembers its name and arguments
(`model.mnistlab_spec`), which checkpoints store so that they can rebuild the model.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from mnistlab.errors import MnistlabError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    factory: Callable[..., nn.Module]
    summary: str  # one line for `mnistlab models`


MODELS: dict[str, ModelEntry] = {}


def register(name: str, summary: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    def decorator(cls: type[nn.Module]) -> type[nn.Module]:
        MODELS[name] = ModelEntry(name, cls, summary)
        return cls

    return decorator


def model_arguments(name: str) -> dict[str, Any]:
    """The keyword arguments a model accepts, with their defaults."""
    sig = inspect.signature(get_entry(name).factory)
    return {k: p.default for k, p in sig.parameters.items() if p.default is not p.empty}


def get_entry(name: str) -> ModelEntry:
    try:
        return MODELS[name]
    except KeyError:
        raise MnistlabError(f"unknown model '{name}'; choose one of: {', '.join(MODELS)}") from None


def create_model(name: str, **kwargs: Any) -> nn.Module:
    entry = get_entry(name)
    allowed = model_arguments(name)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise MnistlabError(f"model '{name}' takes no argument {', '.join(unknown)}; "
                            f"it takes: {', '.join(allowed) or 'none'}")
    model = entry.factory(**kwargs)
    model.mnistlab_spec = {"name": name, "kwargs": {**allowed, **kwargs}}
    return model


def model_spec(model: nn.Module) -> dict[str, Any]:
    spec = getattr(model, "mnistlab_spec", None)
    if spec is None:
        raise MnistlabError(
            f"{type(model).__name__} was not built by mnistlab.models.create_model, "
            "so a checkpoint could not rebuild it"
        )
    return spec
