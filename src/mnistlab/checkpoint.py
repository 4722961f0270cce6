"""Checkpoints: one file that can rebuild the model, evaluate it, and resume its training.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
`torch.load(..., weights_only=True)`: no pickled code runs when a file is opened.

    format, version       "mnistlab-checkpoint", 1
    model                 {"name": "fast", "kwargs": {...}}  -> create_model(name, **kwargs)
    state_dict            the model's weights
    normalizer            {"mean": ..., "std": ...} of the training pixels
    dataset, classes      what the model predicts
    config                the resolved TrainConfig
    bf16                  whether it trained (and was tested) under bf16 autocast
    channels_last         the memory layout it trained in (kept on resume)
    train_seconds, wall_seconds   time spent so far, over every session
    epoch, batch, step    progress: `batch` > 0 means saved in the middle of epoch `epoch`
    optimizer, scheduler  their state_dicts (None in an inference-only export)
    rng                   torch's global RNG state (dropout), CUDA's if any
    best                  {"val_acc": ..., "epoch": ...}
    ema                   only with --ema: {"decay", "updates", "trained_state_dict"}; then
                          `state_dict` is the moving average (what is evaluated and served)
                          and `trained_state_dict` the weights being trained (train/ema.py)
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnistlab.atomic import write_with
from mnistlab.data.pipeline import MNIST_NORMALIZER, Normalizer
from mnistlab.device import bf16_runs
from mnistlab.errors import MnistlabError
from mnistlab.models import create_model
from mnistlab.text import plural

FORMAT = "mnistlab-checkpoint"
VERSION = 1


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    try:
        write_with(path, lambda f: torch.save({"format": FORMAT, "version": VERSION, **state},
                                              f))
    except OSError as e:  # a full disk, a folder where the file should be
        raise MnistlabError(f"{path}: cannot write ({e.strerror or e})") from None


def resolve_checkpoint_path(path: str | os.PathLike[str], prefer: str = "best.pt",
                            last_ok: bool = False) -> Path:
    """A checkpoint file as given, or the checkpoint of a run directory: `prefer` ("best.pt"
    or "last.pt"; NumPy runs keep `.npz` files under the same names).

    A run interrupted before its first epoch ended has a last.pt but no best.pt: its weights
    were never validated, so asking for best.pt is refused with a message naming --last,
    unless `last_ok` (e.g. `--last` was given; `last_ok` also lets "last.pt" fall back on
    best.pt). Commands that use last.pt should say so (`checkpoint_note`)."""
    path = Path(path)
    if path.is_dir():
        want, other = Path(prefer).stem, ("last" if Path(prefer).stem == "best" else "best")
        names = [f"{want}.pt", f"{want}.npz"]
        if last_ok:
            names += [f"{other}.pt", f"{other}.npz"]
        for name in names:
            if (path / name).is_file():
                return path / name
        if want == "best" and any((path / n).is_file() for n in ("last.pt", "last.npz")):
            raise MnistlabError(f"{path}: no best.pt (the run stopped before its first epoch "
                                "ended, so no weights were validated); pass --last to use "
                                "last.pt anyway")
        raise MnistlabError(f"{path}: no best.pt or last.pt in this run directory")
    if not path.exists():
        raise MnistlabError(f"{path}: no such file or directory")
    return path


def checkpoint_note(state: dict[str, Any]) -> str | None:
    """A line to print when a command uses a last.pt rather than the validated best.pt."""
    path = Path(state.get("path", ""))
    if path.stem != "last":
        return None
    where = f"epoch {state.get('epoch', 0)}"
    if state.get("batch"):
        where = f"epoch {state['epoch'] + 1}, batch {state['batch']} (mid-epoch)"
    return f"using {path} (the latest weights, at {where}), not best.pt"


def load_checkpoint(path: str | os.PathLike[str], prefer: str = "best.pt",
                    last_ok: bool = False) -> dict[str, Any]:
    path = resolve_checkpoint_path(path, prefer, last_ok)
    if path.suffix == ".npz":
        from mnistlab.checkpoint_npz import npz_to_checkpoint

        return {"format": FORMAT, "version": VERSION, **npz_to_checkpoint(path)}
    exported = _exported_file(path)
    if exported:
        raise MnistlabError(f"{path}: {exported}, made to be used outside mnistlab; mnistlab "
                            "commands take the checkpoint or run directory it was exported "
                            "from (e.g. runs/NAME or runs/NAME/best.pt)")
    try:
        with warnings.catch_warnings():  # torch's own notices; the errors below say it all
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:  # e.g. permission denied (torch's own errors are not OSErrors)
        raise MnistlabError(f"{path}: cannot read ({e.strerror or e})") from None
    except Exception as e:  # garbage bytes raise anything inside torch's unpickler:
        # UnpicklingError, BadZipFile, RuntimeError, EOFError, struct.error, KeyError, ...
        raise MnistlabError(f"{path}: not a readable PyTorch checkpoint: "
                            f"{_why_unreadable(path, e)}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise MnistlabError(f"{path}: not an mnistlab checkpoint (no '{FORMAT}' marker)")
    version = state.get("version", VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise MnistlabError(f"{path}: checkpoint version must be a positive integer, got "
                            f"{_one_line(repr(version), 40)}")
    if version > VERSION:
        raise MnistlabError(f"{path}: checkpoint version {state['version']} is newer than this "
                            f"mnistlab understands ({VERSION}); upgrade mnistlab")
    state["path"] = str(path)
    return state


def _exported_file(path: Path) -> str | None:
    """What `mnistlab export` (or another exporter) wrote, in words, if `path` is one: a
    TorchScript archive (its code/ and constants.pkl records) or an ONNX model (a protobuf
    that opens with the IR version and the producer's name)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            f.seek(max(0, path.stat().st_size - 4096))
            tail = f.read()
    except OSError:
        return None
    ours = b"mnistlab" in tail  # ONNX: metadata "producer" = "mnistlab", at the end
    if re.match(rb"\x08[\x01-\x7f]\x12[\x01-\x7f][\x20-\x7e]", head) or (
            path.suffix.lower() == ".onnx" and head[:1] == b"\x08"):
        who = "mnistlab export" if ours else "an ONNX exporter"
        return f"an ONNX model (written by {who}; run it with onnxruntime)"
    with contextlib.suppress(zipfile.BadZipFile, OSError, ValueError):
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
            if any(n.endswith("/constants.pkl") or "/code/__torch__/" in n for n in names):
                ours = any("/code/__torch__/mnistlab/export" in n for n in names)
                who = "mnistlab export --format torchscript" if ours else "torch.jit.save"
                return f"a TorchScript file (written by {who}; load it with torch.jit.load)"
    return None


def _why_unreadable(path: Path, error: Exception) -> str:
    """What a user can act on, rather than torch's internals (a KeyError '105' is a byte)."""
    with contextlib.suppress(OSError), open(path, "rb") as f:
        head = f.read(512)
        if not head:
            return "the file is empty"
        if zipfile.is_zipfile(path) and "weights only" in str(error).lower():
            return ("it holds Python objects besides tensors, which mnistlab will not unpickle "
                    "(weights_only=True); save a state_dict instead")
        if zipfile.is_zipfile(path):
            return "a torch.save archive, but damaged or cut short"
        if all(32 <= b < 127 or b in b"\t\r\n" for b in head):
            return "it is a text file, not one written by torch.save"
    return "the file was not written by torch.save, or is damaged or cut short"


def load_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict, with a one-line error that says which architecture mismatched."""
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as e:
        missing = len(set(model.state_dict()) - set(state_dict))
        unexpected = len(set(state_dict) - set(model.state_dict()))
        detail = f"{missing} missing and {unexpected} unexpected keys"
        if not missing and not unexpected:
            detail = "tensor shapes differ"
        lines = str(e).splitlines()
        first = lines[1].strip() if len(lines) > 1 else str(e)
        if len(first) > 160:
            first = first[:157] + "..."
        spec = getattr(model, "mnistlab_spec", None)
        name = f"model '{spec['name']}' ({type(model).__name__})" if spec else type(model).__name__
        raise MnistlabError(f"{source}: weights do not fit {name}: {detail} ({first})") from None


def model_from_checkpoint(state: dict[str, Any],
                          device: torch.device | str = "cpu") -> tuple[nn.Module, Normalizer]:
    """Rebuild the model a checkpoint describes, load its weights, and put it in eval mode."""
    spec = state.get("model")
    if not isinstance(spec, dict) or "name" not in spec:
        raise MnistlabError(f"{state.get('path', 'checkpoint')}: has no model description")
    model = create_model(spec["name"], **spec.get("kwargs", {}))
    load_weights(model, state["state_dict"], state.get("path", "checkpoint"))
    norm = state.get("normalizer")
    normalizer = Normalizer(mean=norm["mean"], std=norm["std"]) if norm else MNIST_NORMALIZER
    return model.to(device).eval(), normalizer


def evaluation_bf16(state: dict[str, Any], device: torch.device) -> bool:
    """Evaluate in the precision the run was tested in (bf16 autocast or not), so that `eval`,
    `mistakes` and the report reproduce the counts in its summary exactly."""
    trained = state.get("bf16")
    if trained is None:  # checkpoints that predate the key, and NumPy runs
        trained = state.get("config", {}).get("bf16", "off") != "off"
    return bool(trained) and bf16_runs(device)


def checkpoint_dataset(state: dict[str, Any], name: str | None = None,
                       data_dir: str | os.PathLike[str] | None = None,
                       download: bool = True) -> Any:
    """The data set a checkpoint was trained on (or `name`), looked for first where its run
    found it (unless `data_dir` says otherwise), then in the usual places."""
    from mnistlab.data.dataset import load_dataset

    trained_on = state.get("dataset") or "mnist"
    name = name or trained_on
    if data_dir is None and name == trained_on:
        data_dir = (state.get("config") or {}).get("data_dir")
    return load_dataset(name, data_dir, download)


def dataset_mismatch(state: dict[str, Any], name: str) -> str | None:
    """A warning when a model is evaluated on a data set other than the one it learnt: its
    accuracy there (about 10% for MNIST -> Fashion-MNIST) measures nothing it was taught."""
    trained_on = state.get("dataset") or "mnist"
    if name == trained_on:
        return None
    return (f"this model was trained on {trained_on}, not {name}: its {name} figures measure "
            "transfer to another data set, not how well it learnt (near 10% is chance)")


def load_model(path: str | os.PathLike[str], device: torch.device | str = "cpu",
               prefer: str = "best.pt", last_ok: bool = False,
               ) -> tuple[nn.Module, Normalizer, dict[str, Any]]:
    """The usual way in: a checkpoint file or run directory -> (model, normalizer, state)."""
    state = load_checkpoint(path, prefer, last_ok)
    check_model_state(state)  # before anything is allocated from the file's numbers
    model, normalizer = model_from_checkpoint(state, device)
    return model, normalizer, state


def check_model_state(state: dict[str, Any]) -> None:
    """Refuse, in one line, a checkpoint whose model description, weights, normaliser or
    classes cannot be trusted to rebuild a sane model (see models.registry.check_model_spec:
    argument types and ranges, a parameter budget, every shape against the weights)."""
    import math

    from mnistlab.models.registry import check_model_spec

    source = state.get("path", "checkpoint")
    check_model_spec(state.get("model"), state.get("state_dict"), source)
    norm = state.get("normalizer")
    if norm is not None:
        values = [norm.get(k) for k in ("mean", "std")] if isinstance(norm, dict) else [None]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                   for v in values) or values[1] <= 0:
            raise MnistlabError(f"{source}: normalizer must be {{\"mean\": number, \"std\": "
                                f"positive number}}, got {_one_line(norm)}")
    classes = state.get("classes")
    if classes is not None and (not isinstance(classes, (list, tuple)) or len(classes) > 1000
                                or not all(isinstance(c, (str, int)) for c in classes)):
        raise MnistlabError(f"{source}: classes must be a list of names, got {_one_line(classes)}")
    outputs = model_outputs(state["model"])
    if classes is not None and len(classes) != outputs:
        raise MnistlabError(f"{source}: classes lists {plural(len(classes), 'name')}, but the "
                            f"model has {plural(outputs, 'output')}")
    check_finite(state["state_dict"], source)


def _one_line(value: Any, limit: int = 80) -> str:
    """A value from a file, shown in an error: one line (a tensor prints on several), short."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def model_outputs(spec: dict[str, Any]) -> int:
    """How many logits the model a (checked) description builds returns: one pass of a
    28x28 image on the `meta` device, so nothing is allocated or computed."""
    from mnistlab.models.registry import check_arguments

    with torch.device("meta"):
        model = create_model(spec["name"], **check_arguments(spec["name"],
                                                             spec.get("kwargs", {})))
        return int(model.eval()(torch.zeros(1, 1, 28, 28)).shape[-1])


def check_finite(state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Refuse NaN or infinite weights (a diverged run, a damaged file): such a model answers
    "nan%" and the same class for everything, which no figure downstream would reveal."""
    for key, tensor in state_dict.items():
        if tensor.is_floating_point() or tensor.is_complex():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise MnistlabError(f"{source}: state_dict['{key}'] holds "
                                    f"{plural(bad, 'NaN or infinite value')} of "
                                    f"{tensor.numel():,} (the weights are unusable; a run "
                                    "that diverged, or a damaged file)")
