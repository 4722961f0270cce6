"""Imported first by the server's test modules: skips the module without the `serve` extra
(fastapi, uvicorn, python-multipart) or httpx - except in CI (CI or MNISTLAB_REQUIRE_REAL_DATA
set), where a missing one is a failure, as in tests/test_export.py."""

from __future__ import annotations

import importlib.util
import os

import pytest

MODULES = ("fastapi", "uvicorn", "multipart", "httpx")

missing = [m for m in MODULES if importlib.util.find_spec(m) is None]
if missing:
    if os.environ.get("MNISTLAB_REQUIRE_REAL_DATA") or os.environ.get("CI"):
        pytest.fail(f"{', '.join(missing)} missing, and required in CI", pytrace=False)
    pytest.skip(f"{', '.join(missing)} not installed (pip install 'mnistlab[serve]')",
                allow_module_level=True)
