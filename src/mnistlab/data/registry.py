"""The data sets mnistlab knows: their files, checksums, mirrors and class names.

Each file has two checksums: `md5` of the `.gz` that the mirrors serve (what torchvision
checks) and `raw_md5` of its decompressed bytes, so that an extracted copy, or one that a
distribution re-compressed (Debian's Fashion-MNIST package does), is still recognised.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mnistlab.errors import MnistlabError


@dataclass(frozen=True)
class FileSpec:
    name: str  # canonical name of the gzipped file, e.g. "train-images-idx3-ubyte.gz"
    md5: str  # of the .gz as served by the mirrors
    raw_md5: str | None  # of the decompressed IDX bytes; None where not known
    raw_size: int  # bytes after decompression

    @property
    def extracted_name(self) -> str:
        return self.name.removesuffix(".gz")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    title: str
    files: dict[str, FileSpec]  # keys: train_images, train_labels, test_images, test_labels
    mirrors: tuple[str, ...]  # base URLs, most preferred first
    classes: tuple[str, ...]
    torchvision_folder: str  # `<root>/<this>/raw/` is where torchvision keeps the files
    system_dirs: tuple[str, ...] = field(default=())  # where OS packages install them


# Every sibling of MNIST ships the same four files, with the same sizes once decompressed.
_FILES = (("train_images", "train-images-idx3-ubyte.gz", 47040016),
          ("train_labels", "train-labels-idx1-ubyte.gz", 60008),
          ("test_images", "t10k-images-idx3-ubyte.gz", 7840016),
          ("test_labels", "t10k-labels-idx1-ubyte.gz", 10008))


def _idx_files(md5s: tuple[str, str, str, str],
               raw_md5s: tuple[str, str, str, str] | None = None) -> dict[str, FileSpec]:
    """The four FileSpecs, checksums given in the order of _FILES."""
    raw = raw_md5s or (None, None, None, None)
    return {key: FileSpec(name, md5, raw_md5, size)
            for (key, name, size), md5, raw_md5 in zip(_FILES, md5s, raw, strict=True)}


MNIST = DatasetSpec(
    name="mnist",
    title="MNIST handwritten digits",
    files=_idx_files(("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
                      "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"),
                     ("6bbc9ace898e44ae57da46a324031adb", "a25bea736e30d166cdddb491f175f624",
                      "2646ac647ad5339dbf082846283269ea", "27ae3e4e09519cfbb04c329615203637")),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",  # often answers 403 nowadays: last resort
    ),
    classes=tuple(str(d) for d in range(10)),
    torchvision_folder="MNIST",
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    title="Fashion-MNIST clothing images (Zalando)",
    files=_idx_files(("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
                      "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"),
                     ("f4a8712d7a061bf5bd6d2ca38dc4d50a", "9018921c3c673c538a1fc5bad174d6f9",
                      "8181f5470baa50b63fa0f6fddb340f0a", "15d484375f8d13e6eb1aabb0c3f46965")),
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
             "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    torchvision_folder="FashionMNIST",
    system_dirs=("/usr/share/datasets/fashion-mnist",),  # Debian: dataset-fashion-mnist
)

KMNIST = DatasetSpec(
    name="kmnist",
    title="Kuzushiji-MNIST cursive Japanese characters",
    files=_idx_files(("bdb82020997e1d708af4cf47b453dcf7", "e144d726b3acfaa3e44228e80efcd344",
                           "5c965bf0a639b31b8f53240b1b52f4d7", "7320c461ea6c1c855c0b718fb2a4b134")),
    mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
    classes=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    torchvision_folder="KMNIST",
)

DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (MNIST, FASHION_MNIST, KMNIST)}


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name.lower()]
    except KeyError:
        raise MnistlabError(
            f"unknown dataset '{name}'; choose one of: {', '.join(DATASETS)}"
        ) from None
