"""`mnistlab export`: write a checkpoint as ONNX (checked with onnxruntime) or TorchScript."""

from __future__ import annotations

import argparse

from mnistlab.cli.common import add_data, add_json, output_target, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export a model to ONNX or TorchScript for use outside mnistlab",
        description="Export a checkpoint (fp32, traced on the CPU) to a self-contained file that "
                    "takes raw pixels (N, 1, 28, 28) in 0..255 and returns (N, 10) logits. "
                    "The written file is checked against PyTorch on test images: an ONNX "
                    "file in onnxruntime, a TorchScript file loaded back with torch.jit.")
    p.set_defaults(func=run)
    p.add_argument("checkpoint", metavar="CHECKPOINT_OR_RUN")
    p.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    p.add_argument("--check-images", type=int, default=1000, metavar="N",
                   help="test images for the parity check (default: 1000)")
    add_data(p, dataset=False)
    add_json(p)


def run(args: argparse.Namespace) -> int:
    from mnistlab.errors import MnistlabError
    from mnistlab.export import TOLERANCE, export

    if args.check_images < 1:
        raise MnistlabError(f"--check-images: must be at least 1, got {args.check_images}")
    output_target(args.output)
    check = export(args.checkpoint, args.format, args.output, images=args.check_images,
                   data_dir=args.data_dir, download=args.download)
    if args.json:
        print_json({"output": args.output, "format": args.format,
                    "check": {"runtime": check.runtime, "images": check.images,
                              "source": check.source, "same_class": check.same_class,
                              "max_abs_diff": check.max_abs_diff, "tolerance": TOLERANCE,
                              "ok": check.ok}})
        return 0
    print(f"wrote {args.output} ({args.format}, fp32; input: raw pixels (N, 1, 28, 28) in 0..255)")
    print(check.describe())
    return 0
