"""`mnistlab featuremaps CHECKPOINT`: what every layer of a trained model makes of one image."""

from __future__ import annotations

import argparse
from typing import Any

from mnistlab.cli.common import add_data, add_device, add_output, save
from mnistlab.errors import MnistlabError
from mnistlab.text import plural


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("featuremaps", help="show what every layer outputs for one image",
                       description="The input, every convolution, activation and pooling "
                                   "layer's channels in order, then the logits and softmax "
                                   "probabilities. For an MLP: its first layer's weights as "
                                   "28x28 templates and the hidden activations as bars.")
    p.set_defaults(func=run)
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a .pt file or a run directory")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--index", type=int, help="an image of the data set, by position")
    which.add_argument("--image", metavar="FILE", help="an image file (PNG, JPEG, ...): "
                       "brought into MNIST's form first")
    p.add_argument("--split", choices=["train", "test"], default="test",
                   help="the split --index counts in")
    p.add_argument("--max-channels", type=int, default=64,
                   help="channels shown per layer (the first ones)")
    add_output(p, "featuremaps.png")
    add_data(p)
    add_device(p)


def load_split(args: argparse.Namespace, state: dict[str, Any], split: str):
    """The checkpoint's data set (or --dataset): (images, labels, classes) of `split`."""
    import sys

    from mnistlab.checkpoint import checkpoint_dataset, dataset_mismatch

    data = checkpoint_dataset(state, args.dataset, args.data_dir, args.download)
    warning = dataset_mismatch(state, data.name)
    if warning:
        print(f"mnistlab: warning: {warning}", file=sys.stderr)
    return (getattr(data, f"{split}_images"), getattr(data, f"{split}_labels"),
            tuple(state.get("classes") or data.classes))


def pick(images, labels, index: int, split: str):
    if not 0 <= index < len(labels):
        raise MnistlabError(f"--index {index}: out of range, the {split} split has "
                            f"{plural(len(labels), 'image')} (0 to {len(labels) - 1})")
    return images[index], int(labels[index])


def run(args: argparse.Namespace) -> int:
    from mnistlab.checkpoint import load_model
    from mnistlab.device import resolve_device
    from mnistlab.viz.featuremaps import feature_map_figure

    if args.max_channels < 1:
        raise MnistlabError(f"--max-channels must be at least 1, got {args.max_channels}")
    model, normalizer, state = load_model(args.checkpoint, resolve_device(args.device))
    if args.image is not None:
        from mnistlab.predict.preprocess import load_image, to_mnist

        image, label = to_mnist(load_image(args.image)), None
        classes = tuple(state.get("classes") or ())
        source = args.image
    else:
        images, labels, classes = load_split(args, state, args.split)
        image, label = pick(images, labels, args.index, args.split)
        source = f"{args.split} image {args.index}"
    spec = state["model"]
    fig = feature_map_figure(model, image, normalizer, classes, label, args.max_channels,
                             title=f"what {spec['name']} sees: {source}")
    print(f"wrote {save(fig, args)}")
    return 0
