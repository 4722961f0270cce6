"""Run `mnistlab serve` in a child process for as long as a `with` block lasts.

For tests, benchmarks and notebooks: a real uvicorn server on 127.0.0.1 and a free port, up
(answering /healthz) before the block starts, stopped when it ends - whatever happens inside.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import IO

from mnistlab.errors import MnistlabError


class ServerUrl(str):
    """The base URL, e.g. "http://127.0.0.1:41234", that also knows the server's process id
    (tests read its memory from /proc/<pid>/status)."""

    pid: int


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(checkpoint: str | os.PathLike[str], *, host: str = "127.0.0.1",
                   port: int | None = None, device: str = "cpu", startup_s: float = 60.0,
                   extra_args: tuple[str, ...] = ()) -> Iterator[ServerUrl]:
    """Yield the server's base URL, e.g. "http://127.0.0.1:41234"."""
    port = port or free_port(host)
    command = [sys.executable, "-m", "mnistlab", "serve", str(checkpoint), "--host", host,
               "--port", str(port), "--device", device, *extra_args]
    # Output goes to a file, not a pipe: a pipe nobody reads could fill up and stall the server.
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True)
        url = ServerUrl(f"http://{host}:{port}")
        url.pid = process.pid
        try:
            _wait_until_up(process, url, startup_s, log)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_up(process: subprocess.Popen, url: str, startup_s: float, log: IO[str]) -> None:
    deadline = time.monotonic() + startup_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            output = log.read()
            raise MnistlabError(f"mnistlab serve exited with status {process.returncode}: "
                                f"{output.strip()[-500:]}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError:  # it answered, e.g. 400 when our Host is not allowed
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    raise MnistlabError(f"mnistlab serve did not answer {url}/healthz within {startup_s:g} s")
