"""Choosing the device, and what bf16 can do on it.

`auto` picks CUDA, then Apple's MPS, then the CPU. Whether a run then uses bf16 autocast
(and channels-last) is decided by measuring a few real training steps
(`mnistlab.train.precision`), not by CPU flags: a CPU can report AVX512-BF16 and still run
bf16 slower than fp32. This module answers the two questions that measurement needs: can
bf16 autocast run here at all (`bf16_runs`), and which hardware is this (`hardware_name`),
for the cache of measured verdicts.

torch is imported inside the functions, so that `mnistlab --help` and argument errors,
which import this module for DEVICE_CHOICES, never pay for importing torch.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import platform
from typing import TYPE_CHECKING

from mnistlab.errors import MnistlabError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    import torch

    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_device(name: str = "auto") -> torch.device:
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise MnistlabError(
            f"--device: unknown device '{name}' (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MnistlabError("--device cuda: no CUDA GPU is available to this PyTorch build")
    if device.type == "cuda" and device.index is not None and (
            device.index >= torch.cuda.device_count()):
        raise MnistlabError(f"--device {name}: there are {torch.cuda.device_count()} CUDA GPUs")
    if device.type == "mps" and not _mps_available():
        raise MnistlabError("--device mps: Apple MPS is not available here")
    return device


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields from /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if not line.strip():
                break  # the end of the first processor's block
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_has_fast_bf16() -> bool:
    """True when the CPU reports native bf16 arithmetic (AVX512-BF16 or AMX). Only a hint:
    measured, such a CPU can still run bf16 autocast slower than fp32 (docs/speed.md)."""
    flags = _cpuinfo().get("flags", "").split()
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


def cpu_model() -> str:
    """E.g. 'AMD EPYC' or 'Intel(R) Xeon(R) Platinum 8488C', as lscpu's 'Model name'."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def _cuda_index(device: torch.device) -> int:
    """The GPU that `device` means: `cuda` alone is the current one."""
    import torch

    return device.index if device.index is not None else torch.cuda.current_device()


def hardware_name(device: torch.device) -> str:
    """What a measured verdict depends on: the CPU model (and a digest of its feature flags,
    since a virtual machine may report a generic model name) or the GPU's name."""
    import torch

    if device.type == "cuda":
        return f"cuda {torch.cuda.get_device_name(_cuda_index(device))}"
    if device.type == "mps":
        return f"mps {platform.machine()} {cpu_model()}"
    flags = hashlib.sha1(_cpuinfo().get("flags", "").encode()).hexdigest()[:10]
    return f"cpu {cpu_model()} (flags {flags})"


def cuda_bf16_native(device: torch.device) -> bool:
    """bf16 in hardware on this very GPU (`cuda:N`, not the current one): without emulation,
    which PyTorch's default `is_bf16_supported()` counts and which is slow."""
    import torch

    with torch.cuda.device(_cuda_index(device)):
        return torch.cuda.is_bf16_supported(including_emulation=False)


def bf16_runs(device: torch.device) -> bool:
    """bf16 autocast works here, fast or not: every CPU (PyTorch emulates what the hardware
    lacks), GPUs with native bf16; not MPS (mnistlab does not offer it there). A run that was
    tested under bf16 is evaluated under bf16 wherever this holds, so numbers agree."""
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        return cuda_bf16_native(device)
    return False


def use_bf16(setting: str, device: torch.device) -> bool:
    """Resolve a forced `--bf16 on|off`; `auto` is decided by measurement
    (mnistlab.train.precision), and here means only "if it can run at all"."""
    if setting == "on":
        if device.type == "mps":
            raise MnistlabError("--bf16 on: bf16 autocast is not supported on MPS")
        if device.type == "cuda" and not cuda_bf16_native(device):
            raise MnistlabError(f"--bf16 on: {device} has no native bf16 (needs compute "
                                "capability 8.0 or newer); use --bf16 off")
        return True
    if setting == "auto":
        return bf16_runs(device)
    return False


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if not enabled:
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that timings measure the work and not its launch."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
