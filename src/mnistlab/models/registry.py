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


MODELS: dict[str, ModelEntry] = {}  # the zoo: what `train --model` and `models` offer
# Models made of zoo models (the ensemble of --members): rebuilt from checkpoints like any
# model, but never trained as one or listed in the zoo.
COMPOSITES: dict[str, ModelEntry] = {}


def register(name: str, summary: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    def decorator(cls: type[nn.Module]) -> type[nn.Module]:
        MODELS[name] = ModelEntry(name, cls, summary)
        return cls

    return decorator


def register_composite(name: str, summary: str
                       ) -> Callable[[type[nn.Module]], type[nn.Module]]:
    def decorator(cls: type[nn.Module]) -> type[nn.Module]:
        COMPOSITES[name] = ModelEntry(name, cls, summary)
        return cls

    return decorator


def model_arguments(name: str) -> dict[str, Any]:
    """The keyword arguments a model accepts, with their defaults."""
    sig = inspect.signature(get_entry(name).factory)
    return {k: p.default for k, p in sig.parameters.items() if p.default is not p.empty}


def get_entry(name: str) -> ModelEntry:
    try:
        return MODELS[name] if name in MODELS else COMPOSITES[name]
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


# ---- model arguments from untrusted files --------------------------------------------------
# A checkpoint loads safely with weights_only=True, yet the model arguments it records are
# still data from a file: {"hidden": [1000000, 1000000]} would allocate terabytes, and a
# negative width raises deep inside torch. So arguments are checked against the types of the
# factory's defaults, the model is built on the `meta` device (shapes, no memory), its size
# is held to a budget and every shape is compared with the state dict - all before a single
# weight is allocated.

MAX_PARAMETERS = 100_000_000  # 400 MB of fp32 weights; the zoo's largest is 9.2 M
MAX_INT_ARGUMENT = 1_000_000  # a width, a layer size
MAX_SEQUENCE_ARGUMENT = 64  # items in a list argument, e.g. the MLP's hidden layers
MAX_STRING_ARGUMENT = 512


def check_arguments(name: str, kwargs: Any, source: str = "model") -> dict[str, Any]:
    """`kwargs` as the model's factory would get them, or a one-line MnistlabError.

    Every argument must be one the factory takes, of the type of its default (an int where
    the default is an int, never a bool; a finite number where it is a float; a short string
    or a short list of ints where it is a string, e.g. `hidden`)."""
    import math

    allowed = model_arguments(name)
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise MnistlabError(f"{source}: model arguments must be a mapping of names to values, "
                            f"got {type(kwargs).__name__}")
    unknown = sorted((k for k in kwargs if k not in allowed), key=str)  # keys of any type
    if unknown:
        raise MnistlabError(f"{source}: model '{name}' takes no argument "
                            f"{', '.join(' '.join(str(k).split()) for k in unknown)}; it "
                            f"takes: {', '.join(allowed) or 'none'}")
    for key, value in kwargs.items():
        default, where = allowed[key], f"{source}: model argument {key}={_short(value)}"
        if isinstance(default, bool) or isinstance(value, bool):
            if not (isinstance(default, bool) and isinstance(value, bool)):
                raise MnistlabError(f"{where}: expected {type(default).__name__}")
        elif isinstance(default, int):
            if not isinstance(value, int) or not 1 <= value <= MAX_INT_ARGUMENT:
                raise MnistlabError(f"{where}: expected an integer in 1..{MAX_INT_ARGUMENT:,}")
        elif isinstance(default, float):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise MnistlabError(f"{where}: expected a finite non-negative number")
        elif isinstance(default, str):
            _check_text_or_sizes(value, where)
        elif default is not None:
            raise MnistlabError(f"{where}: arguments of type {type(default).__name__} cannot "
                                "be checked, so they are not accepted from a file")
    return kwargs


def _check_text_or_sizes(value: Any, where: str) -> None:
    if isinstance(value, str):
        if len(value) > MAX_STRING_ARGUMENT:
            raise MnistlabError(f"{where}: longer than {MAX_STRING_ARGUMENT} characters")
        return
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if (not isinstance(value, (list, tuple)) or len(value) > MAX_SEQUENCE_ARGUMENT
            or not all(isinstance(v, int) and not isinstance(v, bool)
                       and 1 <= v <= MAX_INT_ARGUMENT for v in value)):
        raise MnistlabError(f"{where}: expected a string or at most {MAX_SEQUENCE_ARGUMENT} "
                            f"integers in 1..{MAX_INT_ARGUMENT:,}")


def _short(value: Any) -> str:
    text = " ".join(repr(value).split())  # one line: a tensor's repr spans several
    return text if len(text) <= 60 else text[:57] + "..."


def check_model_spec(spec: Any, state_dict: Any, source: str = "checkpoint",
                     max_parameters: int = MAX_PARAMETERS) -> None:
    """Refuse, in one line, a model description that does not fit its weights or the budget.

    Builds the model on the `meta` device (no memory, no initialisation), counts its
    parameters, and compares every name and shape with `state_dict`."""
    import torch

    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise MnistlabError(f"{source}: has no model description")
    name = spec["name"]
    try:
        get_entry(name)
    except MnistlabError as e:
        raise MnistlabError(f"{source}: {e}") from None
    kwargs = check_arguments(name, spec.get("kwargs", {}), source)
    if not isinstance(state_dict, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()):
        raise MnistlabError(f"{source}: state_dict is not a mapping of names to tensors")
    try:
        with torch.device("meta"):
            model = create_model(name, **kwargs)
    except MnistlabError as e:
        raise MnistlabError(f"{source}: {e}") from None
    except Exception as e:  # whatever a factory raises for arguments it cannot use
        raise MnistlabError(f"{source}: model '{name}' cannot be built from arguments "
                            f"{_short(kwargs)} ({type(e).__name__}: {str(e)[:120]})") from None
    count = sum(p.numel() for p in model.parameters())
    if count > max_parameters:
        raise MnistlabError(f"{source}: model '{name}' with arguments {_short(kwargs)} would "
                            f"have {count:,} parameters; the limit is {max_parameters:,}")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state_dict.items()}
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or unexpected:
        first = (f"missing '{missing[0]}'" if missing else f"unexpected '{unexpected[0]}'")
        raise MnistlabError(f"{source}: weights do not fit model '{name}': {len(missing)} "
                            f"missing and {len(unexpected)} unexpected keys ({first})")
    for key, shape in expected.items():
        if found[key] != shape:
            raise MnistlabError(f"{source}: weights do not fit model '{name}': '{key}' is "
                                f"{list(found[key])} in the file, {list(shape)} in the model")
