"""Imported first by the server's test modules: skips the module without the `serve` extra
(fastapi, uvicorn, python-multipart) or httpx - except in CI, where a missing one is a
failure (conftest.needs_modules)."""

from __future__ import annotations

from conftest import needs_modules

needs_modules("fastapi", "uvicorn", "multipart", "httpx", extra="serve")
