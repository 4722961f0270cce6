"""The held-out real-world picture set (issue 18): nothing was tuned on it, nothing trains on it.

Built by benchmarks/realworld.py, never imported by src/ (tests/test_heldout_imports.py checks
this). README.md in this folder says what is in it and why it shares nothing with training.

    from heldout import build, SMALL, load_sources
    samples = build(seed=0, sizes=SMALL, sources=load_sources())
"""

from .camera import CONDITIONS
from .fonts import MissingFontError
from .sets import (
    DIGIT_FAMILIES,
    FAMILIES,
    FULL,
    NON_DIGIT_FAMILIES,
    NUMBER_FAMILIES,
    READS_AS,
    SMALL,
    Sample,
    Sizes,
    Sources,
    build,
    iter_samples,
    load_optdigits,
    load_sources,
)

__all__ = ["CONDITIONS", "DIGIT_FAMILIES", "FAMILIES", "FULL", "NON_DIGIT_FAMILIES",
           "NUMBER_FAMILIES", "READS_AS", "SMALL", "MissingFontError", "Sample", "Sizes",
           "Sources", "build", "iter_samples", "load_optdigits", "load_sources"]
