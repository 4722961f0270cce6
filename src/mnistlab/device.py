"""Choosing the device and the precision a model runs in.

`auto` picks CUDA, then Apple's MPS, then the CPU. bf16 autocast is used where it is both
supported and measured to help: CUDA GPUs with bf16, and CPUs with AVX512-BF16 or AMX.
"""

from __future__ import annotations

import contextlib
import functools

import torch

from mnistlab.errors import MnistlabError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
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
    if device.type == "mps" and not (getattr(torch.backends, "mps", None)
                                     and torch.backends.mps.is_available()):
        raise MnistlabError("--device mps: Apple MPS is not available here")
    return device


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_has_fast_bf16()
    return False


def use_bf16(setting: str, device: torch.device) -> bool:
    """Resolve `--bf16 auto|on|off` for a device."""
    if setting == "auto":
        return bf16_supported(device)
    if setting == "on":
        if device.type == "mps":
            raise MnistlabError("--bf16 on: bf16 autocast is not supported on MPS")
        return True
    return False


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that timings measure the work and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
