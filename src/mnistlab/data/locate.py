"""Find a data set's files on disk, or download them; never use a file that fails its checksum.

Resolution order, first match wins, file by file:
  1. `data_dir` (the `--data-dir` flag)
  2. the `MNISTLAB_DATA` environment variable
  3. the user cache: `$XDG_CACHE_HOME/mnistlab/<name>`, else `~/.cache/mnistlab/<name>`
  4. known system folders (e.g. Debian's `/usr/share/datasets/fashion-mnist`)
  5. a download into `data_dir` if given, else into the user cache.
Within each root we look at `<root>`, `<root>/<name>` and the torchvision layout
`<root>/<MNIST|FashionMNIST|KMNIST>/raw`, gzipped or extracted.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mnistlab.data.download import DownloadError, download
from mnistlab.data.registry import DATASETS, DatasetSpec, FileSpec
from mnistlab.errors import MnistlabError

ENV_VAR = "MNISTLAB_DATA"


@dataclass(frozen=True)
class LocatedFile:
    path: Path
    md5: str  # md5 of the file as it is on disk
    origin: str  # which step of the resolution order found it


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mnistlab"


def md5_of(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def search_roots(spec: DatasetSpec,
                 data_dir: str | os.PathLike[str] | None) -> list[tuple[str, Path]]:
    """(origin, root) pairs in resolution order."""
    roots: list[tuple[str, Path]] = []
    if data_dir is not None:
        roots.append(("--data-dir", Path(data_dir).expanduser()))
    if os.environ.get(ENV_VAR):
        roots.append((f"${ENV_VAR}", Path(os.environ[ENV_VAR]).expanduser()))
    roots.append(("cache", cache_root()))
    roots.extend(("system", Path(d)) for d in spec.system_dirs)
    return roots


def candidate_paths(spec: DatasetSpec, fspec: FileSpec, root: Path) -> list[Path]:
    folders = [root, root / spec.name, root / spec.torchvision_folder / "raw"]
    return [folder / n for folder in folders for n in (fspec.name, fspec.extracted_name)]


def _known_raw_md5s_of_other_datasets(spec: DatasetSpec) -> set[str]:
    return {f.raw_md5 for s in DATASETS.values() if s is not spec
            for f in s.files.values() if f.raw_md5}


def verify(path: Path, spec: DatasetSpec, fspec: FileSpec) -> tuple[str | None, str]:
    """Return (md5 on disk, "") if `path` holds the expected content, else (None, reason)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        return None, f"cannot read ({e.strerror or e})"
    disk_md5 = md5_of(data)
    if disk_md5 == fspec.md5:
        return disk_md5, ""
    if data[:2] == b"\x1f\x8b":  # gzipped, but not the mirrors' bytes: look inside
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            return None, f"corrupt gzip data ({e})"
    if len(data) != fspec.raw_size:
        return None, f"wrong size: {len(data)} bytes of IDX data, expected {fspec.raw_size}"
    raw_md5 = md5_of(data)
    if fspec.raw_md5 is not None:
        if raw_md5 == fspec.raw_md5:
            return disk_md5, ""
        return None, f"MD5 mismatch (got {raw_md5} for the IDX data, expected {fspec.raw_md5})"
    # Checksum of the extracted file unknown: accept it unless it is another data set's file.
    if raw_md5 in _known_raw_md5s_of_other_datasets(spec):
        return None, "this is a file of another data set"
    return disk_md5, ""


def note(text: str) -> None:
    """One line on stderr about a choice made for the user (never silently)."""
    print(f"mnistlab: note: {text}", file=sys.stderr, flush=True)


def locate_file(spec: DatasetSpec, key: str, data_dir: str | os.PathLike[str] | None,
                rejected: list[str]) -> LocatedFile | None:
    fspec = spec.files[key]
    passed_over: list[str] = []
    for origin, root in search_roots(spec, data_dir):
        for path in candidate_paths(spec, fspec, root):
            if not path.is_file():
                continue
            md5, reason = verify(path, spec, fspec)
            if md5 is not None:
                for why in passed_over:  # a bad copy replaced by another: say so, per file
                    note(f"{why}; using {path} ({origin}) instead")
                return LocatedFile(path, md5, origin)
            passed_over.append(f"rejected {path}: {reason}")
            rejected.append(f"{path}: {reason}")
    return None


def missing_files_message(spec: DatasetSpec, missing: Sequence[str], dest: Path,
                          rejected: Sequence[str], errors: Sequence[str]) -> str:
    lines = [f"{spec.title}: could not find or download {len(missing)} file(s)."]
    lines += [f"  rejected {r}" for r in rejected]
    lines += [f"  download failed: {e}" for e in errors]
    lines.append(f"Put these files in {dest} (or pass --data-dir, or set {ENV_VAR}):")
    lines += [f"  {spec.files[k].name}  md5 {spec.files[k].md5}" for k in missing]
    lines.append("from any of these mirrors:")
    lines += [f"  {m}" for m in spec.mirrors]
    return "\n".join(lines)


def ensure_files(spec: DatasetSpec, data_dir: str | os.PathLike[str] | None = None,
                 download_ok: bool = True, mirrors: Sequence[str] | None = None,
                 progress: bool | None = None) -> dict[str, LocatedFile]:
    """Locate every file of `spec`, downloading what is missing; raise MnistlabError if stuck."""
    found: dict[str, LocatedFile] = {}
    rejected: list[str] = []
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        where = "the other places" if not download_ok else "the other places, then download"
        note(f"--data-dir {data_dir}: no such folder; looking in {where}")
    for key in spec.files:
        located = locate_file(spec, key, data_dir, rejected)
        if located is not None:
            found[key] = located
    missing = [k for k in spec.files if k not in found]
    if not missing:
        return found
    dest = Path(data_dir).expanduser() if data_dir is not None else cache_root() / spec.name
    errors: list[str] = []
    if download_ok:
        show = sys.stderr.isatty() if progress is None else progress
        for key in list(missing):
            fspec = spec.files[key]
            urls = [base + fspec.name for base in (mirrors or spec.mirrors)]
            try:
                path = download(urls, dest / fspec.name, fspec.md5, progress=show)
            except DownloadError as e:
                errors.append(str(e))
                continue
            found[key] = LocatedFile(path, fspec.md5, "download")
            missing.remove(key)
    if missing:
        raise MnistlabError(missing_files_message(spec, missing, dest, rejected, errors))
    return found
