"""The data behind the stand-ins: mnistlab's data finding, loaded once per data set."""

from __future__ import annotations

from mnistlab.data.dataset import DigitData, load_dataset

_CACHE: dict[str, DigitData] = {}


def load(name: str, root: str | None, download: bool, torchvision: bool = False) -> DigitData:
    """The data set `name`, looked for in `root` first (torchvision's layout included), then
    where mnistlab looks; downloaded into `root` only when `download`."""
    if name not in _CACHE:
        _CACHE[name] = load_dataset(name, root, download)
    return _CACHE[name]
