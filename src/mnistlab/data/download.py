"""Download one file from a list of mirrors, with a progress bar and an MD5 check.

The bytes go to a temporary file next to the destination and are renamed into place only
after the checksum matched, so a partial or corrupt download is never mistaken for a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

CHUNK = 1 << 16
TIMEOUT_S = 30


class DownloadError(Exception):
    pass


def _progress_line(name: str, done: int, total: int | None, start: float) -> str:
    rate = done / max(time.perf_counter() - start, 1e-9) / 1e6
    if total:
        width = 30
        filled = int(width * done / total)
        bar = "#" * filled + "." * (width - filled)
        return f"\r  {name} [{bar}] {done / 1e6:6.1f}/{total / 1e6:.1f} MB {rate:5.1f} MB/s"
    return f"\r  {name} {done / 1e6:6.1f} MB {rate:5.1f} MB/s"


def _fetch(url: str, dest: Path, md5: str, progress: bool) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        request = urllib.request.Request(url, headers={"User-Agent": "mnistlab"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=TIMEOUT_S) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            done, start = 0, time.perf_counter()
            while chunk := resp.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    sys.stderr.write(_progress_line(dest.name, done, total, start))
            if progress:
                sys.stderr.write("\n")
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != md5:
            raise DownloadError(f"{url}: MD5 mismatch (got {digest.hexdigest()}, expected {md5})")
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def download(urls: Sequence[str], dest: Path, md5: str, progress: bool = True) -> Path:
    """Try each URL in turn; return `dest` once a copy with the right MD5 is in place."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # e.g. a read-only --data-dir: say so in one line, with the rest
        raise DownloadError(f"{dest.name}: cannot create {dest.parent} ({e.strerror or e})"
                            ) from None
    problems = []
    for url in urls:
        if progress:
            sys.stderr.write(f"Downloading {url}\n")
        try:
            _fetch(url, dest, md5, progress)
            return dest
        except DownloadError as e:
            problems.append(str(e))
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as e:
            # HTTPException: e.g. IncompleteRead when a server closes the connection early.
            reason = getattr(e, "reason", None) or e
            problems.append(f"{url}: {reason}")
        if progress:
            sys.stderr.write(f"  failed: {problems[-1]}\n")
    raise DownloadError(f"{dest.name}: " + "; ".join(problems))
