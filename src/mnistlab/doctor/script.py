"""Run a user's training script, unchanged, under the watch, and stop it after a budget.

    from mnistlab.doctor.script import examine_script
    report = examine_script("train.py", ["--epochs", "3"], steps=300, seconds=30)

The script runs as `__main__` (runpy), with its own folder as the working directory and on
`sys.path`, and its own `sys.argv`. Its output goes to `output` (stderr by default), indented
and dimmed, long output summarised. Every hook, the working directory, `sys.argv`,
`sys.path` and the standard streams are restored afterwards, whatever the script did.
"""

from __future__ import annotations

import _thread
import collections
import os
import runpy
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import torch

from mnistlab.doctor import standins
from mnistlab.doctor.watch import BudgetReached, Watch
from mnistlab.errors import MnistlabError

HEAD_LINES, TAIL_LINES = 25, 10  # script output shown before and after the summary line


class ScriptOutput:
    """A text stream that indents (and on a terminal dims) every line it is given, shows the
    first HEAD_LINES and the last TAIL_LINES, and counts the rest."""

    def __init__(self, target: TextIO, quiet: bool = False) -> None:
        self.target, self.quiet = target, quiet
        self.dim = hasattr(target, "isatty") and target.isatty()
        self.partial, self.shown, self.hidden = "", 0, 0
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.lines = 0
        self.encoding = "utf-8"

    def _emit(self, line: str) -> None:
        text = f"  | {line}"
        self.target.write(f"\033[2m{text}\033[0m\n" if self.dim else text + "\n")

    def write(self, text: str) -> int:
        self.partial += text.replace("\r\n", "\n").replace("\r", "\n")
        *lines, self.partial = self.partial.split("\n")
        for line in lines:
            self.lines += 1
            if self.quiet:
                continue
            if self.shown < HEAD_LINES:
                self._emit(line)
                self.shown += 1
            else:
                if len(self.tail) == self.tail.maxlen:
                    self.hidden += 1
                self.tail.append(line)
        return len(text)

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        if self.partial:
            self.write("\n")
        if self.hidden:
            self._emit(f"... {self.hidden} more lines ...")
        for line in self.tail:
            self._emit(line)
        self.tail.clear()
        self.flush()


@dataclass
class ScriptRun:
    path: Path
    args: list[str]
    watch: Watch
    ended: str  # "finished" | "budget" | "exit N" | "error" | "interrupted"
    seconds: float
    error: str | None = None  # the script's exception, one line
    error_where: str | None = None  # file:line in the script
    stand_ins: list[str] = field(default_factory=list)
    output_lines: int = 0


def _script_frame(tb, path: Path) -> str | None:
    where = None
    for frame in traceback.extract_tb(tb):
        if Path(frame.filename).resolve() == path:
            where = f"{path.name}:{frame.lineno}: {(frame.line or '').strip()}"
    return where


def run_script(path: str | os.PathLike[str], args: list[str] | None = None, *,
               steps: int = 300, seconds: float = 30.0, stand_ins: bool = True,
               output: TextIO | None = None, quiet: bool = False,
               seed: int | None = 0) -> ScriptRun:
    """Run the script under a Watch; return what happened. Never raises for the script's own
    errors (they are part of the diagnosis); raises MnistlabError for a path that is not a
    readable Python file."""
    script = Path(path)
    if not script.is_file():
        raise MnistlabError(f"{script}: no such file")
    if script.suffix != ".py":
        raise MnistlabError(f"{script}: expected a Python script (.py)")
    if steps < 1 or seconds <= 0:
        raise MnistlabError("--steps and --seconds must be positive")
    script = script.resolve()
    watch = Watch(max_steps=steps, max_seconds=seconds, script_dir=str(script.parent))
    out = ScriptOutput(output or sys.stderr, quiet)
    saved = (os.getcwd(), list(sys.argv), list(sys.path), sys.stdout, sys.stderr,
             torch.get_num_threads(), torch.is_grad_enabled())
    used = standins.install() if stand_ins else []
    ended, error, where = "finished", None, None
    # A script that hangs outside torch (input(), a socket) never reaches a hook: a watchdog
    # interrupts it well after the budget.
    done = threading.Event()

    def watchdog() -> None:
        if not done.wait(3 * seconds + 120):
            watch.stopped_by = "timeout"
            _thread.interrupt_main()

    threading.Thread(target=watchdog, daemon=True).start()
    start = time.perf_counter()
    try:
        os.chdir(script.parent)
        sys.argv = [str(script), *(args or [])]
        sys.path.insert(0, str(script.parent))
        sys.stdout = sys.stderr = out  # type: ignore[assignment]
        if seed is not None:
            torch.manual_seed(seed)
        watch.install()
        try:
            runpy.run_path(str(script), run_name="__main__")
        except BudgetReached:
            ended = "budget"
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            ended = "finished" if code == 0 else f"exit {code}"
            if code and not isinstance(e.code, int):
                error = str(e.code)
        except KeyboardInterrupt:
            ended = "budget" if watch.stopped_by == "timeout" else "interrupted"
        except Exception as e:  # the script's own error: a finding, not a crash of ours
            ended = "error"
            if isinstance(e, StopIteration) and watch.winding:
                ended = "budget"  # `next(iter(loader))` on a loader the budget cut short
            text = str(e).strip().splitlines()
            if ended == "error":
                error = f"{type(e).__name__}: {text[0][:300]}" if text else type(e).__name__
                where = _script_frame(e.__traceback__, script)
        finally:
            watch.restore()
        if ended == "finished" and watch.winding and watch.cut_passes:
            ended = "budget"  # it ended only because the budget cut its epochs short
    finally:
        done.set()
        elapsed = time.perf_counter() - start
        out.close()
        os.chdir(saved[0])
        sys.argv[:] = saved[1]
        sys.path[:] = saved[2]
        sys.stdout, sys.stderr = saved[3], saved[4]
        torch.set_num_threads(saved[5])
        torch.set_grad_enabled(saved[6])
        if used:
            standins.uninstall(used)
    return ScriptRun(script, list(args or []), watch, ended, elapsed, error, where,
                     sorted(set(standins.USED)), out.lines)


def examine_script(path: str | os.PathLike[str], args: list[str] | None = None, *,
                   steps: int = 300, seconds: float = 30.0, stand_ins: bool = True,
                   output: TextIO | None = None, quiet: bool = False, probes: bool = True):
    """Run the script and diagnose it: a Report (findings, measurements)."""
    from mnistlab.doctor.script_checks import diagnose

    run = run_script(path, args, steps=steps, seconds=seconds, stand_ins=stand_ins,
                     output=output, quiet=quiet)
    return diagnose(run, probes=probes)
