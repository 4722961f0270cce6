"""What a developer's machine may skip, CI must run: a missing extra (fastapi, uvicorn,
httpx, onnx, tensorboard) or tool (Playwright, Chromium) is a skip here and a failure in CI,
whether the test says so itself (conftest.needs_modules, conftest.missing) or uses
pytest.importorskip (conftest's report hooks). Checked in a child pytest, once without and
once with CI set."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

CASES = {
    "test_module_level.py": """
        import pytest
        pytest.importorskip("no_such_module_for_mnistlab")
        def test_a(): pass
        """,
    "test_inside.py": """
        import pytest
        from conftest import missing, needs_modules
        def test_importorskip(): pytest.importorskip("no_such_module_for_mnistlab")
        def test_needs_modules(): needs_modules("no_such_module_for_mnistlab", extra="serve")
        def test_missing_tool(): missing("Chromium is not installed")
        def test_present(): needs_modules("json", extra="serve")
        """,
}


def child_pytest(tmp_path: Path, ci: bool, name: str) -> str:
    (tmp_path / name).write_text(textwrap.dedent(CASES[name]))
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "MNISTLAB_REQUIRE_REAL_DATA")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    if ci:
        env["MNISTLAB_REQUIRE_REAL_DATA"] = "1"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "conftest", "-rA", name], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(("name", "here", "in_ci"), [
    ("test_module_level.py", "1 skipped", "1 error"),
    ("test_inside.py", "1 passed, 3 skipped", "3 failed, 1 passed"),
])
def test_missing_extras_skip_here_and_fail_in_ci(tmp_path, name, here, in_ci):
    assert here in child_pytest(tmp_path, False, name)
    assert in_ci in child_pytest(tmp_path, True, name)
