"""What the benchmarks share: the shared machine's lock, a description of the machine, and
the thread count their own PyTorch work runs at (forced, or measured as `mnistlab eval`
measures it), said in one line."""

from __future__ import annotations

import contextlib
import fcntl
import os
import platform
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from mnistlab.train.threads import ThreadChoice, choose_for_inference, default_threads, fixed


@contextlib.contextmanager
def holding(lock: str | None) -> Iterator[None]:
    """Hold a flock for one section, so a shared machine's other timings wait for it."""
    if lock is None:
        yield
        return
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def machine(say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The machine and the PyTorch threads the benchmark runs with, which it also says in
    one line on stderr (`say`: elsewhere), so that every benchmark that records the machine
    shows the thread count it used."""
    n, default = torch.get_num_threads(), default_threads()
    line = (f"threads: {n} (PyTorch's default)" if n == default else
            f"threads: {n} (set by the benchmark; PyTorch's default here: {default})")
    (say or (lambda text: print(text, file=sys.stderr)))(line)
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu": model, "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "load_average_at_start": round(os.getloadavg()[0], 2),
            # read when the OpenMP runtime starts; they change what a waiting thread does
            # (docs/speed.md, "What the OpenMP runtime does while it waits")
            "openmp_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY",
                                                      "GOMP_SPINCOUNT") if k in os.environ}}


def benchmark_threads(forced: int | None, step: Callable[[], None] | None = None, *,
                      steps: int | None = None,
                      say: Callable[[str], None] | None = print) -> ThreadChoice:
    """Set the thread count of a benchmark's own PyTorch work and say it in one line, as
    the commands do: `forced` (its --threads N); else measured on `step` (one unit of its
    work) at 1 and N threads, or, with no step, PyTorch's default, said as such. `steps`:
    how many units follow (None: many; a short benchmark keeps one thread unmeasured)."""
    if forced is None and step is None:
        choice = fixed(torch.get_num_threads(), "PyTorch's default, not measured")
        if say is not None:
            say(choice.describe())
        return choice
    return choose_for_inference(step or (lambda: None), steps=steps, forced=forced, say=say,
                                after="fixed for the benchmark")
