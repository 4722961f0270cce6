"""The whole command's wall time, from the moment the process started.

A training run's final line used to count from the start of training, leaving out Python's
start-up, the imports, loading the data and the start-up measurements (about 4.6 s of a
10.7 s command on a busy machine). The command line marks its start here
(`mark_command_start`), and the final line then reports the time since the process began:
on Linux from /proc (the process's start time against the system's uptime, 10 ms
resolution); elsewhere from the moment the `train` command's module was imported, and the
line says what that leaves out. Library callers (`train(config)`) mark nothing: their line
says the time counts from the start of training.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

_IMPORTED = time.perf_counter()  # the fallback start: when the command line imported this
_command_start: float | None = None  # perf_counter() value of the command's start
_command_from = ""  # what the start is: "process" or "command line"


def process_age() -> float | None:
    """Seconds since this process started, from /proc (Linux); None where unknown."""
    with contextlib.suppress(OSError, ValueError, IndexError, AttributeError):
        with open("/proc/self/stat") as f:
            stat = f.read()
        # Field 22 (starttime, clock ticks since boot) counts from after the command name,
        # which is in parentheses and may hold spaces.
        fields = stat[stat.rindex(")") + 2:].split()
        start_ticks = int(fields[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        age = uptime - start_ticks / os.sysconf("SC_CLK_TCK")
        if 0 <= age < 10 * 365 * 86400:
            return age
    return None


def mark_command_start() -> None:
    """Called by `mnistlab train` as soon as it runs: from now on the run's final line
    reports the whole command's time."""
    global _command_start, _command_from
    age = process_age()
    if age is not None:
        _command_start, _command_from = time.perf_counter() - age, "process"
    else:
        _command_start, _command_from = _IMPORTED, "command line"


def clear_command_start() -> None:
    global _command_start, _command_from
    _command_start, _command_from = None, ""


def command_start() -> float | None:
    """The command's start as a perf_counter() value, or None for library use."""
    return _command_start


def command_seconds() -> float | None:
    return None if _command_start is None else time.perf_counter() - _command_start


def command_scope() -> str:
    """What `command_seconds` covers, for the final line."""
    if _command_from == "process":
        return "the whole command"
    if _command_from:
        return "the whole command but Python's own start-up"
    return ""


@contextlib.contextmanager
def unmarked() -> Iterator[None]:
    """Within it, as if the command had marked no start: for a later part of one command
    (the second member of an ensemble), whose time before training is not the command's
    start-up."""
    global _command_start, _command_from
    saved = _command_start, _command_from
    _command_start, _command_from = None, ""
    try:
        yield
    finally:
        _command_start, _command_from = saved
