"""`mnistlab models`: the zoo with parameter counts and multiply-accumulates per image."""

from __future__ import annotations

import argparse

from mnistlab.cli.common import add_json, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the model zoo, or show one model layer by layer")
    p.set_defaults(func=run)
    p.add_argument("name", nargs="?", help="show this model's layers, shapes and parameters")
    add_json(p)


def run(args: argparse.Namespace) -> int:
    from mnistlab.models import MODELS, create_model, describe, summarize
    from mnistlab.models.summary import count_params

    if args.name:
        model = create_model(args.name)  # an unknown name is a one-line MnistlabError
        if args.json:
            print_json([vars(layer) for layer in describe(model)])
        else:
            print(summarize(model, title=f"{args.name}: {MODELS[args.name].summary}"))
        return 0
    rows = []
    for name, entry in MODELS.items():
        model = create_model(name)
        rows.append({"name": name, "parameters": count_params(model),
                     "macs": sum(layer.macs for layer in describe(model)),
                     "description": entry.summary})
    if args.json:
        print_json(rows)
        return 0
    print(f"{'model':<18}{'params':>11}{'MACs/image':>13}  description")
    for r in rows:
        print(f"{r['name']:<18}{r['parameters']:>11,}{r['macs']:>13,}  {r['description']}")
    return 0
