"""Ship a trained model outside mnistlab: ONNX (checked with onnxruntime) or TorchScript.

The exported graph is self-contained: it takes raw pixels, float32 (N, 1, 28, 28) in
[0, 255] (white digit on black, as in MNIST), applies the checkpoint's normaliser itself and
returns (N, 10) float32 logits. A consumer needs no mean/std and no mnistlab.

An export is only reported done after a parity check: the written file, loaded back in
onnxruntime (ONNX) or `torch.jit.load` (TorchScript), and the PyTorch model must pick the
same class on every check image and agree on every logit to `TOLERANCE`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnistlab.atomic import write_bytes, write_with
from mnistlab.data.pipeline import Normalizer
from mnistlab.errors import MnistlabError

FORMATS = ("onnx", "torchscript")
TOLERANCE = 1e-4  # max |logit_onnx - logit_torch| the check accepts
INPUT_NAME, OUTPUT_NAME = "pixels", "logits"


class PixelsToLogits(nn.Module):
    """The model with its normaliser folded in: raw pixels (N, 1, 28, 28) in [0, 255] -> logits."""

    def __init__(self, model: nn.Module, normalizer: Normalizer) -> None:
        super().__init__()
        self.model = model
        # Normalizer's own affine map, so that both paths round alike.
        self.scale, self.shift = normalizer.scale, normalizer.shift

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixels * self.scale + self.shift)


@dataclass(frozen=True)
class ParityCheck:
    images: int
    source: str  # where the check images came from, in words
    same_class: int  # images on which both runtimes predict the same class
    max_abs_diff: float  # over all logits of all images
    runtime: str = "onnxruntime"  # what ran the exported file

    @property
    def ok(self) -> bool:
        return self.same_class == self.images and self.max_abs_diff <= TOLERANCE

    def describe(self) -> str:
        verdict = "PASS" if self.ok else "FAIL"
        # `source` is said in the plural ("mnist test images"); one image reads "1 ... image".
        source = self.source.replace("images", "image", 1) if self.images == 1 else self.source
        return (f"{self.runtime} vs PyTorch on {self.images:,} {source}: same class on "
                f"{self.same_class:,}/{self.images:,}, max |logit difference| "
                f"{self.max_abs_diff:.2e} (limit {TOLERANCE:.0e}) - {verdict}")


def metadata(state: dict[str, Any], normalizer: Normalizer) -> dict[str, str]:
    """Facts a consumer needs, stored in the exported file (ONNX metadata_props)."""
    spec = state.get("model") or {}
    return {
        "producer": "mnistlab",
        "model": str(spec.get("name", "?")),
        "dataset": str(state.get("dataset", "?")),
        "classes": ",".join(str(c) for c in state.get("classes") or range(10)),
        "input": f"{INPUT_NAME}: float32 (N, 1, 28, 28), raw pixels 0..255, white on black",
        "output": f"{OUTPUT_NAME}: float32 (N, 10), unnormalised class scores",
        "normalizer_mean": repr(normalizer.mean),
        "normalizer_std": repr(normalizer.std),
    }


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters print progress, deprecation notices and torchvision warnings; a CLI
    command should print only its own lines. Errors still propagate."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo",
                                              "onnxscript")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def export_onnx(wrapped: PixelsToLogits, path: str | os.PathLike[str],
                meta: dict[str, str] | None = None) -> None:
    """Export with the torch.export-based exporter (needs onnx and onnxscript), batch size
    dynamic, fp32, weights inside the file."""
    _require("onnx", "onnxscript")
    example = torch.zeros(2, 1, 28, 28)
    with _quiet():
        program = torch.onnx.export(
            wrapped.cpu().float().eval(), (example,), dynamo=True, external_data=False,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch")},))
    if program is None:  # pragma: no cover - dynamo=True always returns a program
        raise MnistlabError("torch.onnx.export returned no program")
    proto = program.model_proto
    for key, value in (meta or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    write_bytes(path, proto.SerializeToString())


def export_torchscript(wrapped: PixelsToLogits, path: str | os.PathLike[str]) -> None:
    """Trace to TorchScript (deprecated by PyTorch in favour of torch.export, but still what
    C++ libtorch and older runtimes load)."""
    with _quiet():
        traced = torch.jit.trace(wrapped.cpu().float().eval(), torch.zeros(2, 1, 28, 28))
        write_with(path, lambda f: torch.jit.save(traced, f))


def _require(*modules: str) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MnistlabError(f"ONNX export needs {', '.join(missing)}: "
                            "pip install 'mnistlab[export]'")


@torch.no_grad()
def check_onnx(path: str | os.PathLike[str], wrapped: PixelsToLogits, images_u8: torch.Tensor,
               source: str, batch_size: int = 500) -> ParityCheck:
    """Run the ONNX file in onnxruntime and the PyTorch model on the same uint8 images."""
    _require("onnxruntime")
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wrapped = wrapped.cpu().float().eval()
    same, worst = 0, 0.0
    for start in range(0, len(images_u8), batch_size):
        pixels = images_u8[start : start + batch_size].unsqueeze(1).float()
        expected = wrapped(pixels)
        got = torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: pixels.numpy()})[0])
        same += int((got.argmax(1) == expected.argmax(1)).sum())
        worst = max(worst, float((got - expected).abs().max()))
    return ParityCheck(len(images_u8), source, same, worst)


@torch.no_grad()
def check_torchscript(path: str | os.PathLike[str], wrapped: PixelsToLogits,
                      images_u8: torch.Tensor, source: str, batch_size: int = 500
                      ) -> ParityCheck:
    """Load the TorchScript file back and run it and the PyTorch model on the same images:
    tracing records one path through `forward`, so a data-dependent branch would be lost."""
    with _quiet():
        loaded = torch.jit.load(str(path), map_location="cpu").eval()
    wrapped = wrapped.cpu().float().eval()
    same, worst = 0, 0.0
    for start in range(0, len(images_u8), batch_size):
        pixels = images_u8[start : start + batch_size].unsqueeze(1).float()
        expected, got = wrapped(pixels), loaded(pixels)
        same += int((got.argmax(1) == expected.argmax(1)).sum())
        worst = max(worst, float((got - expected).abs().max()))
    return ParityCheck(len(images_u8), source, same, worst, runtime="TorchScript")


def check_images(state: dict[str, Any], n: int = 1000, data_dir: str | None = None,
                 download: bool = False) -> tuple[torch.Tensor, str]:
    """The first `n` test images of the checkpoint's data set; without the data, `n` random
    sparse images (still a fair numerical check, but not of real digits) - and say which."""
    from mnistlab.checkpoint import checkpoint_dataset

    name = str(state.get("dataset") or "mnist")
    try:
        data = checkpoint_dataset(state, None, data_dir, download)
        return data.test_images[:n], f"{name} test images"
    except MnistlabError:
        g = torch.Generator().manual_seed(0)
        ink = torch.rand(n, 28, 28, generator=g) < 0.2
        pixels = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
        return pixels * ink, f"random images ({name} test set not found)"


def export(checkpoint: str | os.PathLike[str], fmt: str, out: str | os.PathLike[str], *,
           images: int = 1000, data_dir: str | None = None,
           download: bool = False) -> ParityCheck:
    """Export a checkpoint or run directory and return the parity check of the written
    file (raise if it fails, removing the file, so that a bad export is never left behind)."""
    from mnistlab.checkpoint import load_model

    if fmt not in FORMATS:
        raise MnistlabError(f"--format: unknown format '{fmt}' (choose {' or '.join(FORMATS)})")
    model, normalizer, state = load_model(checkpoint, "cpu")  # export is fp32 on the CPU
    wrapped = PixelsToLogits(model, normalizer).eval()
    out = Path(out)
    try:
        if fmt == "torchscript":
            export_torchscript(wrapped, out)
        else:
            export_onnx(wrapped, out, metadata(state, normalizer))
    except OSError as e:  # an unwritable folder or a full disk: one line, not a traceback
        raise MnistlabError(f"{out}: cannot write ({e.strerror or e})") from None
    pixels, source = check_images(state, images, data_dir, download)
    check = check_torchscript if fmt == "torchscript" else check_onnx
    result = check(out, wrapped, pixels, source)
    if not result.ok:
        out.unlink(missing_ok=True)
        name = "TorchScript" if fmt == "torchscript" else "ONNX"
        raise MnistlabError(f"{out}: {name} export failed its check, file removed: "
                            f"{result.describe()}", exit_code=1)
    return result
