"""The data behind the stand-ins: mnistlab's data finding, loaded once per data set."""

from __future__ import annotations

from pathlib import Path

from mnistlab.data.dataset import DigitData, load_dataset

_CACHE: dict[str, DigitData] = {}
USED: list[str] = []  # what a run used, for the report: "torchvision.datasets.MNIST", ...


def load(name: str, root: str | None, download: bool, torchvision: bool = False) -> DigitData:
    """The data set `name`, looked for in `root` first (torchvision's layout included), then
    where mnistlab looks; downloaded into `root` only when `download`."""
    if name not in _CACHE:
        # A root that does not exist yet holds nothing: look where mnistlab looks (a download,
        # if asked for, then goes to mnistlab's cache rather than a new folder by the script)
        folder = root if root is not None and Path(root).is_dir() else None
        _CACHE[name] = load_dataset(name, folder, download)
    return _CACHE[name]
