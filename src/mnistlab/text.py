"""Words in output: one place for the plural of a count ("1 epoch", "2 epochs")."""

from __future__ import annotations


def plural(count: int | float, word: str, many: str | None = None, fmt: str = ",") -> str:
    """`count` and `word` in the number that fits: plural(1, "thread") -> "1 thread",
    plural(2, "thread") -> "2 threads", plural(3, "class", "classes"), plural(1200, "image")
    -> "1,200 images" (`fmt` formats the count)."""
    return f"{count:{fmt}} {word if count == 1 else (many or word + 's')}"
