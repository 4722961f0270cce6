"""What the user sees while a model trains: a live line on a terminal and one line per epoch.

Shared by the PyTorch trainer and the NumPy backend so that both read the same.
"""

from __future__ import annotations

import time
from typing import Any, TextIO


class Progress:
    """The Keras-style progress line: rewritten in place on a terminal, one line per epoch."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream, self.enabled = stream, enabled
        self.live = enabled and stream.isatty()
        self.last_draw = 0.0

    def print(self, text: str) -> None:
        if self.enabled:
            self.stream.write(("\r\033[K" if self.live else "") + text + "\n")
            self.stream.flush()

    def update(self, text: str) -> None:
        now = time.perf_counter()
        if self.live and now - self.last_draw > 0.2:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
            self.last_draw = now


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


def format_final_line(test_acc: float, correct: int, total: int, train_seconds: float,
                      wall_seconds: float, run_path: Any) -> str:
    return (f"test accuracy {test_acc:.2%} ({correct}/{total}), {train_seconds:.1f} s training, "
            f"{wall_seconds:.1f} s in all, {run_path}/")
