"""Keep freed memory inside the process on glibc, so that a CPU training step does not pay a
page fault for every buffer it frees and allocates again.

glibc serves an allocation above its mmap threshold (128 KiB at first, raised automatically
only when a large mmapped block is freed) with a fresh mmap, and gives it back to the kernel
on free. A training step frees its activations and gradients and allocates the same sizes in
the next step, so each step gets new zeroed pages, one page fault per 4 KiB: on the project's
2-core AMD EPYC the `best` recipe spent about an eighth of its CPU time in the kernel, and
trained 15-25% slower than with the thresholds raised (`python benchmarks/allocator.py`
measures it side by side). `keep_freed_memory()` raises the mmap threshold to 256 MiB and
the trim threshold to 512 MiB with `mallopt`, for the whole process, so those buffers are
reused from the heap. The process then holds on to up to the trim threshold of freed memory.

Left alone: a process whose glibc thresholds were set through the environment
(MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_, GLIBC_TUNABLES), `MNISTLAB_MALLOC=default`,
and every C library that is not glibc (macOS, musl, Windows).
"""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD = -1  # mallopt's parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 256 << 20  # below this, blocks come from the heap and are reused
TRIM_THRESHOLD = 512 << 20  # free memory the heap keeps before giving any back
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")

_done: str | None = None


def keep_freed_memory() -> str:
    """Raise glibc's thresholds once per process; what was done, as one line to print."""
    global _done
    if _done is None:
        _done = _apply()
    return _done


def _apply() -> str:
    if os.environ.get("MNISTLAB_MALLOC", "").lower() == "default":
        return "memory: the C library's default allocator settings (MNISTLAB_MALLOC=default)"
    set_by_user = [name for name in USER_SETTINGS if name in os.environ]
    if set_by_user:
        return f"memory: allocator settings left as the environment sets them ({set_by_user[0]})"
    if platform.libc_ver()[0] != "glibc":
        return "memory: not glibc; allocator settings left alone"
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols: glibc's mallopt among them
        ok = (libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
              and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
    except (OSError, AttributeError):
        ok = False
    if not ok:
        return "memory: glibc refused mallopt; allocator settings left alone"
    return (f"memory: glibc keeps freed blocks below {MMAP_THRESHOLD >> 20} MiB for reuse "
            f"(MNISTLAB_MALLOC=default turns this off)")
