"""`mnistlab convert`: NumPy `.npz` checkpoints to PyTorch `.pt` and back (MLPs only)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert a NumPy .npz MLP checkpoint to PyTorch .pt, "
                                       "or a PyTorch mlp checkpoint to .npz")
    p.set_defaults(func=run)
    p.add_argument("checkpoint", metavar="CHECKPOINT_OR_RUN")
    p.add_argument("-o", "--output", required=True, help="FILE.pt or FILE.npz")


def run(args: argparse.Namespace) -> int:
    from mnistlab.checkpoint import load_checkpoint, save_checkpoint
    from mnistlab.checkpoint_npz import checkpoint_to_npz
    from mnistlab.cli.common import output_target
    from mnistlab.errors import MnistlabError

    output = output_target(args.output)
    if output.suffix not in (".pt", ".npz"):
        raise MnistlabError(f"{output}: the output must end in .pt or .npz")
    state = load_checkpoint(args.checkpoint)
    if output.suffix == ".npz":
        checkpoint_to_npz(state, output)
    else:
        keep = ("model", "state_dict", "normalizer", "dataset", "classes", "config", "epoch")
        save_checkpoint(output, {k: state[k] for k in keep if k in state})
    print(f"wrote {output} ({state['model']['name']} {state['model'].get('kwargs', {})})")
    return 0
