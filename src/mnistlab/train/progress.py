"""What the user sees while a model trains: a live line on a terminal and one line per epoch.

Shared by the PyTorch trainer and the NumPy backend so that both read the same.
"""

from __future__ import annotations

import time
from typing import Any, TextIO

LIVE_EVERY_S = 0.2  # redraws of a terminal's status line
PLAIN_EVERY_S = 5.0  # plain status lines when the output is a file or a pipe


class Progress:
    """The Keras-style progress line: rewritten in place on a terminal, one line per epoch.
    When the output is not a terminal (a file, a pipe, a CI log), a plain status line is
    printed instead whenever nothing else was printed for `plain_every_s` seconds, so that
    a slow run never looks dead."""

    def __init__(self, stream: TextIO, enabled: bool, *, plain_every_s: float = PLAIN_EVERY_S,
                 clock: Any = time.perf_counter) -> None:
        self.stream, self.enabled, self.clock = stream, enabled, clock
        isatty = getattr(stream, "isatty", None)
        self.live = enabled and bool(isatty and isatty())
        self.plain_every_s = plain_every_s
        self.last_draw = 0.0
        self.last_line = clock()  # when the last whole line was written

    def print(self, text: str) -> None:
        if self.enabled:
            self.stream.write(("\r\033[K" if self.live else "") + text + "\n")
            self.stream.flush()
            self.last_line = self.clock()

    def due(self) -> bool:
        """Whether `update` would show something now: cheap, for a per-step check."""
        if not self.enabled:
            return False
        now = self.clock()
        if self.live:
            return now - self.last_draw > LIVE_EVERY_S
        return now - self.last_line >= self.plain_every_s

    def update(self, text: str) -> None:
        """The status line: redrawn in place on a terminal, else a plain line when due."""
        if not self.due():
            return
        if self.live:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
            self.last_draw = self.clock()
        else:
            self.print(text)


def format_epoch_line(row: dict[str, Any], epochs: int) -> str:
    """`epoch 1/2 | loss … acc … | val loss … acc … | lr … | N img/s | S s` from a metrics row."""
    parts = [f"epoch {row['epoch']}/{epochs}",
             f"loss {row['train_loss']:.4f} acc {row['train_acc']:.2%}"]
    if row.get("val_acc") is not None:
        parts.append(f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.2%}")
    if row.get("test_acc") is not None:
        parts.append(f"test acc {row['test_acc']:.2%}")
    parts += [f"lr {row['lr']:.2g}", f"{row['images_per_s']:,.0f} img/s",
              f"{row['seconds']:.1f} s"]
    return " | ".join(parts)


# The start-up phases a final line names (Trainer.startup), in order.
STARTUP_LABELS = (("before_trainer", "Python and imports"), ("data", "data"),
                  ("model_threads_precision", "threads and precision"),
                  ("batches", "batches and not-a-digit set-up"))


def format_eta(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_final_line(test_acc: float, correct: int, total: int, train_seconds: float,
                      wall_seconds: float, run_path: Any, command_seconds: float | None = None,
                      scope: str = "", startup: dict[str, float] | None = None,
                      train_seconds_before: float = 0.0) -> str:
    """`wall_seconds` counts from the start of training (every session of the run);
    `command_seconds`, where the command line marked its start (train.clock), the whole
    command, as `scope` says. `train_seconds` covers every session; a resumed run
    (`train_seconds_before` > 0) says how much of it this command trained, so that its
    training never reads as longer than the command."""
    if command_seconds is not None:
        parts = [f"{label} {startup[key]:.1f} s" for key, label in STARTUP_LABELS
                 if startup and startup.get(key, 0.0) >= 0.05]
        whole = (f"{command_seconds:.1f} s in all ({scope}"
                 + (f"; before training: {', '.join(parts)}" if parts else "") + ")")
    else:
        whole = f"{wall_seconds:.1f} s since training started (set-up not counted)"
    training = f"{train_seconds:.1f} s training"
    if train_seconds_before > 0:
        training += (f" in all sessions ({train_seconds - train_seconds_before:.1f} s of it "
                     f"in this one)")
    return f"test accuracy {test_acc:.2%} ({correct}/{total}), {training}, {whole}, {run_path}/"
