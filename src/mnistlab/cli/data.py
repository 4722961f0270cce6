"""`mnistlab data`: where the files are, their checksums, counts, class balance and pixel stats."""

from __future__ import annotations

import argparse

from mnistlab.cli.common import add_data, add_json, output_file, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="data set facts: files, MD5s, counts, balance, pixel stats")
    p.set_defaults(func=run, action="info")
    add_data(p)
    add_json(p)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    s = actions.add_parser("sample", help="write a labelled grid of example images")
    s.set_defaults(func=run_sample)
    add_data(s)
    s.add_argument("-o", "--output", default="samples.png",
                   help="PNG, SVG or PDF file to write; a folder: samples.png in it")
    s.add_argument("--per-class", type=int, default=10, help="examples per class")
    s.add_argument("--split", choices=["train", "test"], default="train")
    s.add_argument("--seed", type=int, default=0)


def info(args: argparse.Namespace) -> dict:
    import torch

    from mnistlab.data.dataset import load_dataset
    from mnistlab.data.pipeline import Normalizer

    data = load_dataset(args.dataset or "mnist", args.data_dir, args.download)
    result = {"dataset": data.name, "title": data.spec.title, "classes": list(data.classes),
              "files": {f.path.name: {"path": str(f.path), "md5": f.md5, "origin": f.origin,
                                      "md5_ok": True} for f in data.files.values()}}
    for split in ("train", "test"):
        images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
        stats = Normalizer.fit(images)  # mean and std of the pixels scaled to [0, 1]
        result[split] = {"count": len(labels), "shape": list(images.shape[1:]),
                         "class_counts": torch.bincount(labels, minlength=10).tolist(),
                         "pixel_mean": stats.mean, "pixel_std": stats.std}
    return result


def run(args: argparse.Namespace) -> int:
    result = info(args)
    if args.json:
        print_json(result)
        return 0
    print(f"{result['title']} ({result['dataset']})")
    for name, f in result["files"].items():
        print(f"  {name:<28} md5 {f['md5']} OK  ({f['origin']}: {f['path']})")
    for split in ("train", "test"):
        s = result[split]
        print(f"{split}: {s['count']:,} images of {'x'.join(map(str, s['shape']))}, "
              f"pixel mean {s['pixel_mean']:.4f} std {s['pixel_std']:.4f}")
        print("  per class: " + "  ".join(f"{c}:{n}" for c, n in
                                          zip(result["classes"], s["class_counts"], strict=True)))
    return 0


def run_sample(args: argparse.Namespace) -> int:
    from mnistlab.data.dataset import load_dataset
    from mnistlab.viz.grids import write_sample_grid

    data = load_dataset(args.dataset or "mnist", args.data_dir, args.download)
    path = write_sample_grid(data, output_file(args.output, "samples.png"),
                             per_class=args.per_class, split=args.split, seed=args.seed)
    print(f"wrote {path}")
    return 0
