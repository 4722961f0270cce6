"""allocator.keep_freed_memory: training steps stop paying page faults for reused buffers."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from mnistlab import allocator

# Minor page faults per training step of a small convnet, before and after, in a fresh process
# (the setting is process-wide and cannot be undone).
FAULTS = """
import resource, torch
from mnistlab.allocator import keep_freed_memory
from mnistlab.models import create_model
torch.set_num_threads(1)
model = create_model("fast", width=16)
x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
def faults_per_step(n=5):
    for _ in range(2):  # warm up
        torch.nn.functional.cross_entropy(model(x), y).backward()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        torch.nn.functional.cross_entropy(model(x), y).backward()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / n
default = faults_per_step()
line = keep_freed_memory()
print(default, faults_per_step(), line, sep="|")
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_buffers_are_reused_instead_of_faulted_in_again():
    env = {k: v for k, v in os.environ.items()
           if k not in (*allocator.USER_SETTINGS, "MNISTLAB_MALLOC")}
    out = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True,
                         check=True, env=env).stdout.strip().splitlines()[-1]
    default, kept, line = out.split("|")
    assert float(default) > 500  # each step's activations come back as fresh pages
    assert float(kept) < float(default) / 10
    assert line.startswith("memory: glibc keeps freed blocks below 256 MiB")


def test_it_leaves_alone_what_the_user_set(monkeypatch):
    monkeypatch.setenv("MNISTLAB_MALLOC", "default")
    assert "default allocator settings (MNISTLAB_MALLOC=default)" in allocator._apply()
    monkeypatch.delenv("MNISTLAB_MALLOC")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")
    assert allocator._apply() == ("memory: allocator settings left as the environment sets "
                                  "them (MALLOC_TRIM_THRESHOLD_)")
    for name in allocator.USER_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("", ""))
    assert allocator._apply() == "memory: not glibc; allocator settings left alone"
