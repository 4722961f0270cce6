"""Compare not-a-digit detectors on development data only (issue 18, item 3).

    python benchmarks/detectors.py                        # seeds 0 1, leave-one-family-out on 0
    python benchmarks/detectors.py --seeds 0 --lofo-seeds # quicker: no leave-one-family-out
    python benchmarks/detectors.py --seeds --lofo-seeds 1 # leave-one-family-out on seed 1 only
    python benchmarks/detectors.py --json /tmp/detectors.json

The default takes about 25 minutes on the project's shared 2-core machine (one thread; 14
runs, and 24 more for leave-one-family-out). docs/detectors.md has the figures and the
decision. The runs go to --workdir (default /tmp/mnistlab-detectors), replaced each time.

Development data, nothing else (never MNIST test, never benchmarks/heldout):
- each run's own MNIST validation digits: the threshold of every detector keeps ACCEPT of them;
- generated negatives `negatives.load_bank(2000, 1, "holdout")`: other fonts, pens and point
  counts than the training bank, per kind (the eight training families);
- photo-like pictures from the development generator (mnistlab.data.photolike, seed 1, not
  the realworld benchmark's seed 0) through `preprocess.prepare`: letters, shapes, scribbles
  and taps (non-digits), printed digits and the run's own *validation* digits photographed
  (digit photos, which must be accepted).

Models, each trained here with the library (one thread, one epoch of the default recipe):
    oe       the default: outlier exposure (uniform softmax on negatives)
    plain    --outlier-exposure off
    cls11    an 11th "not a digit" output trained with cross-entropy on the negatives
    binary   a small dedicated digit / non-digit network (fast-strided, width 8, one output)
oe, plain and cls11 each with label smoothing 0.2 (the default) and 0.

Scores (higher = more digit-like): max-softmax, energy (logsumexp), Mahalanobis and kNN on
the penultimate features (benchmarks/feature_scores.py, fitted on the run's training
digits only), 1 - p(not a digit) for cls11, the binary net's logit, and "AND" rules that
accept only where both scores would (each score's validation CDF, the minimum, one
threshold).

Leave-one-family-out: each training family is removed from the training bank in turn, the
runs that use negatives are trained again, and that family's development rejection is
measured. Scores fitted on digits alone (Mahalanobis, kNN on `plain`) never see a negative,
so their figure is the full one by construction.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import devset as photolike  # the development pictures
from benchmark_common import machine
from feature_scores import (
    KNNScore,
    MahalanobisScore,
    features_and_logits,
    last_linear,
    threshold_for,
)

from mnistlab.data.dataset import load_dataset
from mnistlab.data.pipeline import Batcher, Normalizer, Split, train_val_split
from mnistlab.errors import MnistlabError
from mnistlab.evaluate import predict_logits, result_from_logits
from mnistlab.models import create_model
from mnistlab.notadigit import exposure, negatives
from mnistlab.predict.preprocess import prepare
from mnistlab.train import resolve_config
from mnistlab.train.loop import Trainer

BANK_SEED, BANK_SIZE, WEIGHT = exposure.BANK_SEED, exposure.BANK_SIZE, exposure.WEIGHT

ACCEPT = 0.995  # share of validation digits every threshold keeps
DEV_NEG_SIZE, DEV_NEG_SEED = 2000, 1  # the "holdout" variant: other fonts and pens
PHOTO_SEED = 1  # the development draw of photolike (realworld.py uses seed 0)
KNN_K, KNN_BANK = 10, 10_000
BINARY_WIDTH = 8
PHOTO_FAMILIES = tuple(f"photo-{k}" for k in photolike.NON_DIGIT_KINDS)
FAMILIES = (*negatives.KINDS, *PHOTO_FAMILIES)
# Photo shapes that training draws nothing like (outline squares, spirals) and the rest.
SHAPE_GROUPS = ("square", "spiral", "other shapes")


def photo_shape_names(per_kind: int) -> list[str]:
    """Which shape each photolike shape sample is: the first draw of its generator, as in
    photolike.shape_ink (a benchmark-side breakdown; checked against the sample count)."""
    names = []
    for i in range(per_kind):
        rng = photolike.sample_rng(PHOTO_SEED, photolike.KINDS["shape"], i)
        names.append(photolike.SHAPES[int(rng.integers(len(photolike.SHAPES)))])
    return names


# ---- training the prototypes ------------------------------------------------------------
def replace_last_linear(model: nn.Module, out_features: int) -> None:
    """Swap the model's output layer for one with `out_features` outputs."""
    layer = last_linear(model)
    name = next(n for n, m in model.named_modules() if m is layer)
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, nn.Linear(layer.in_features, out_features).to(layer.weight.device))


class BenchExposure(exposure.OutlierExposure):
    """The library's outlier exposure, optionally without one family, optionally with an
    11th class (cross-entropy to class 10) instead of the uniform-softmax loss. Calibration
    and the summary's gate figures are skipped: the benchmark measures everything itself."""

    def __init__(self, trainer: Any, leave_out: str | None, eleventh: bool) -> None:
        super().__init__(trainer)
        self.eleventh = eleventh
        if leave_out is not None:
            _, kinds = negatives.load_bank(BANK_SIZE, BANK_SEED, "train")
            keep = torch.from_numpy(kinds != negatives.KINDS.index(leave_out))
            self.bank = self.bank[keep.to(self.bank.device)]

    def split_loss(self, logits: torch.Tensor, n_digits: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.eleventh:
            digits, extra = super().split_loss(logits, n_digits)
            return digits, extra
        negs = logits[n_digits : n_digits + self.per_step].float()
        printed = logits[n_digits + self.per_step :].float()
        smoothing = self.label_smoothing
        neg_loss = F.cross_entropy(negs, torch.full((len(negs),), 10, device=negs.device),
                                   label_smoothing=smoothing)
        printed_loss = F.cross_entropy(printed, self._step_labels, label_smoothing=smoothing)
        return (logits[:n_digits],
                WEIGHT * neg_loss + printed_loss * (len(printed) / n_digits))

    def calibrate(self, trainer: Any) -> dict[str, Any]:
        self.figures = {}
        return {}

    def record(self, trainer: Any, summary: dict[str, Any]) -> dict[str, Any]:
        return summary


class BenchTrainer(Trainer):
    """A library Trainer with the benchmark's head (oe, plain or cls11) and bank."""

    def __init__(self, config: Any, data: Any, head: str, leave_out: str | None) -> None:
        self.head, self.leave_out = head, leave_out
        super().__init__(config, data, stream=io.StringIO())

    def _setup_model(self, plan: Any = None) -> None:
        super()._setup_model(plan)
        if self.head == "cls11":
            replace_last_linear(self.model, 11)
            self.net = self.model

    def _setup_batches(self) -> None:
        super()._setup_batches()
        if self.head != "plain":
            self.outliers = BenchExposure(self, self.leave_out, self.head == "cls11")

    def evaluate(self, batches: Batcher) -> Any:  # validation accuracy over the ten digits
        logits, labels = predict_logits(self.model, batches, self.bf16)
        return result_from_logits(logits[:, :10], labels)


def train_classifier(head: str, smoothing: float, seed: int, data: Any, workdir: Path,
                     leave_out: str | None) -> tuple[nn.Module, float]:
    """(the trained model in eval mode, training seconds)."""
    name = f"{head}-ls{smoothing:g}-s{seed}" + (f"-no-{leave_out}" if leave_out else "")
    config = resolve_config(seed=seed, threads=1, label_smoothing=smoothing,
                            outlier_exposure="off" if head == "plain" else "on",
                            runs_dir=str(workdir / "runs"), name=name)
    if (workdir / "runs" / name).exists():  # a re-run: train again from scratch
        import shutil

        shutil.rmtree(workdir / "runs" / name)
    trainer = BenchTrainer(config, data, head, leave_out)
    trainer.fit()
    return trainer.model.float().eval(), trainer.train_seconds


def train_binary(seed: int, train_split: Split, normalizer: Normalizer,
                 leave_out: str | None) -> tuple[nn.Module, float]:
    """A digit / non-digit network: fast-strided at width 8 with one output, one epoch over
    the training digits (and the printed digits) against the training negatives bank."""
    torch.manual_seed(seed)
    model = create_model("fast-strided", width=BINARY_WIDTH)
    replace_last_linear(model, 1)
    images, kinds = negatives.load_bank(BANK_SIZE, BANK_SEED, "train")
    if leave_out is not None:
        images = images[kinds != negatives.KINDS.index(leave_out)]
    bank = normalizer(torch.from_numpy(images.copy()))
    printed = normalizer(torch.from_numpy(
        negatives.load_bank(2000, 0, "printed")[0].copy()))
    batches = Batcher(train_split, 128, normalizer, shuffle=True, seed=seed)
    steps = len(batches)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                                weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.3, total_steps=steps)
    gen = torch.Generator().manual_seed(seed + 17)
    started = time.perf_counter()
    model.train()
    for x, _ in batches.epoch(0):
        negs = bank[torch.randint(len(bank), (32,), generator=gen)]
        pos = torch.cat([x, printed[torch.randint(len(printed), (8,), generator=gen)]])
        out = model(torch.cat([pos, negs])).squeeze(1)
        target = torch.cat([torch.ones(len(pos)), torch.zeros(len(negs))])
        weight = torch.cat([torch.full((len(pos),), 0.5 / len(pos)),
                            torch.full((len(negs),), 0.5 / len(negs))])  # balanced
        loss = F.binary_cross_entropy_with_logits(out, target, weight=weight, reduction="sum")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.eval(), time.perf_counter() - started


# ---- development data --------------------------------------------------------------------
def prepared(samples: list[photolike.Sample]) -> np.ndarray:
    """The 28x28 arrays `prepare` makes of these pictures; blank where it finds no ink (a
    blank scores like any input: the detectors alone are compared, not prepare's checks)."""
    out = []
    for s in samples:
        try:
            out.append(prepare(s.image).array)
        except MnistlabError:
            out.append(np.zeros((28, 28), np.uint8))
    return np.stack(out)


def dev_sets(per_kind: int, per_condition: int, val: Split) -> dict[str, Any]:
    """uint8 image tensors and their family names; digit photos from these validation digits."""
    neg_images, neg_kinds = negatives.load_bank(DEV_NEG_SIZE, DEV_NEG_SEED, "holdout")
    photos = photolike.non_digit_samples(per_kind, PHOTO_SEED)
    vx, vy = val.images.numpy(), val.labels.numpy()
    names = iter(photo_shape_names(per_kind))
    group = [""] * len(neg_images)
    for sample in photos:
        name = next(names) if sample.kind == "shape" else ""
        group.append(name if name in SHAPE_GROUPS or not name else "other shapes")
    return {
        "shape": np.array(group),
        "non-digit": torch.from_numpy(np.concatenate([neg_images, prepared(photos)])),
        "family": np.array([negatives.KINDS[k] for k in neg_kinds]
                           + [f"photo-{s.kind}" for s in photos]),
        "printed": torch.from_numpy(prepared(photolike.digit_samples(
            "printed", per_condition, PHOTO_SEED))),
        "handwritten": torch.from_numpy(prepared(photolike.digit_samples(
            "handwritten", per_condition, PHOTO_SEED, vx, vy))),
    }


# ---- scoring -----------------------------------------------------------------------------
def auroc(pos: torch.Tensor, neg: torch.Tensor) -> float:
    """P(a digit scores above a non-digit), ties half (the Mann-Whitney statistic)."""
    values = torch.cat([pos, neg]).double()
    _, inverse, counts = values.unique(return_inverse=True, return_counts=True)
    mean_rank = counts.cumsum(0).double() - (counts.double() - 1) / 2  # ties: their mean rank
    u = mean_rank[inverse][: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def cdf(reference: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Share of `reference` scores at or below each x (the empirical CDF on validation)."""
    ref = reference.double().sort().values
    return torch.searchsorted(ref, x.double(), right=True).double() / len(ref)


def and_rule(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept only where both would: min of each score's validation CDF."""
    return {k: torch.minimum(cdf(a["val"], a[k]), cdf(b["val"], b[k])) for k in a}


def share(flags: np.ndarray) -> float:
    """The share of True, NaN for none (a table cell with no images)."""
    return float(flags.mean()) if len(flags) else float("nan")


def measure(scores: dict[str, torch.Tensor], family: np.ndarray,
            shape: np.ndarray | None = None) -> dict[str, Any]:
    threshold = threshold_for(scores["val"], ACCEPT)
    rejected = (scores["non-digit"] < threshold).numpy()
    by_family = {f: share(rejected[family == f]) for f in FAMILIES if (family == f).any()}
    neg = np.isin(family, negatives.KINDS)
    return {
        "threshold": threshold,
        "val_accept": float((scores["val"] >= threshold).double().mean()),
        "reject_generated": share(rejected[neg]),
        "reject_photo": share(rejected[~neg]),
        "reject_min_family": min(by_family.values()),
        "families_below_80": [f for f, v in by_family.items() if v < 0.8],
        "by_family": by_family,
        "by_shape": {} if shape is None else {g: share(rejected[shape == g])
                                              for g in SHAPE_GROUPS},
        "accept_printed": float((scores["printed"] >= threshold).double().mean()),
        "accept_handwritten": float((scores["handwritten"] >= threshold).double().mean()),
        "auroc": auroc(scores["val"], scores["non-digit"]),
    }


def rejection(scores: dict[str, torch.Tensor]) -> float:
    """Share of scores["non-digit"] below the threshold that keeps ACCEPT of scores["val"]."""
    threshold = threshold_for(scores["val"], ACCEPT)
    return float((scores["non-digit"] < threshold).double().mean())


def feature_scores(model: nn.Module, inputs: dict[str, torch.Tensor], train_x: torch.Tensor,
                   train_y: torch.Tensor, with_features: bool) -> dict[str, dict]:
    """Every score of one classifier on every set."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    feats, logits = {}, {}
    for key, x in inputs.items():
        feats[key], logits[key] = features_and_logits(model, x)
    classes = logits["val"].shape[1]
    if classes == 11:
        out["p(digit)"] = {k: 1 - v.softmax(1)[:, 10] for k, v in logits.items()}
        out["max-softmax (11)"] = {k: v.softmax(1)[:, :10].amax(1) for k, v in logits.items()}
        return out
    out["max-softmax"] = {k: v.softmax(1).amax(1) for k, v in logits.items()}
    out["energy"] = {k: v.logsumexp(1) for k, v in logits.items()}
    if with_features:
        train_f, _ = features_and_logits(model, train_x)
        maha = MahalanobisScore().fit(train_f, train_y)
        knn = KNNScore(KNN_K, KNN_BANK).fit(train_f)
        out["mahalanobis"] = {k: maha.score(v) for k, v in feats.items()}
        out["knn"] = {k: knn.score(v) for k, v in feats.items()}
        out["max-softmax AND mahalanobis"] = and_rule(out["max-softmax"], out["mahalanobis"])
        out["max-softmax AND knn"] = and_rule(out["max-softmax"], out["knn"])
    return out


# ---- timing ------------------------------------------------------------------------------
def timing(classifier: nn.Module, binary: nn.Module, train_x: torch.Tensor,
           train_y: torch.Tensor, x: torch.Tensor, repeats: int = 200) -> dict[str, float]:
    """Once per run (seconds): the features of the training digits and each fit; per single
    image (milliseconds, what one prediction costs): each score, side by side."""
    began = time.perf_counter()
    feats, _ = features_and_logits(classifier, train_x)
    feature_seconds = time.perf_counter() - began
    began = time.perf_counter()
    maha = MahalanobisScore().fit(feats, train_y)
    maha_seconds = time.perf_counter() - began
    began = time.perf_counter()
    knn = KNNScore(KNN_K, KNN_BANK).fit(feats)
    knn_seconds = time.perf_counter() - began
    one = x[:1]
    f1, _ = features_and_logits(classifier, one)

    def per_call(fn) -> float:
        for _ in range(10):
            fn()
        began = time.perf_counter()
        for _ in range(repeats):
            fn()
        return 1000 * (time.perf_counter() - began) / repeats

    with torch.no_grad():
        return {
            "s: features of the training digits": feature_seconds,
            "s: Mahalanobis fit": maha_seconds,
            "s: kNN fit": knn_seconds,
            "ms: forward (logits: max-softmax, energy, p(digit))": per_call(
                lambda: classifier(one)),
            "ms: forward with features (hook)": per_call(
                lambda: features_and_logits(classifier, one)),
            "ms: Mahalanobis score only": per_call(lambda: maha.score(f1)),
            "ms: kNN score only": per_call(lambda: knn.score(f1)),
            "ms: binary net forward": per_call(lambda: binary(one)),
        }


# ---- the report --------------------------------------------------------------------------
def pct(v: float) -> str:
    return f"{100 * v:.1f}"


def print_table(rows: list[tuple[str, dict[str, Any]]]) -> None:
    head = ["model", "score", "gen. rej", "photo rej", "min family", "printed acc",
            "hand acc", "AUROC", *FAMILIES, *(f"photo {g}" for g in SHAPE_GROUPS)]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * 2 + "---:|" * (len(head) - 2))
    for name, m in rows:
        model, score = name.split(" / ", 1)
        cells = [model, score, pct(m["reject_generated"]), pct(m["reject_photo"]),
                 pct(m["reject_min_family"]), pct(m["accept_printed"]),
                 pct(m["accept_handwritten"]), f"{m['auroc']:.3f}",
                 *(pct(m["by_family"][f]) for f in FAMILIES),
                 *(pct(m["by_shape"][g]) for g in SHAPE_GROUPS)]
        print("| " + " | ".join(cells) + " |")


def mean_rows(per_seed: list[dict[str, dict]]) -> list[tuple[str, dict[str, Any]]]:
    """The mean over seeds of every measure, per detector."""
    rows = []
    for name in per_seed[0]:
        ms = [s[name] for s in per_seed]
        mean = {k: float(np.mean([m[k] for m in ms])) for k in
                ("reject_generated", "reject_photo", "accept_printed", "accept_handwritten",
                 "auroc")}
        mean["by_family"] = {f: float(np.mean([m["by_family"][f] for m in ms]))
                             for f in FAMILIES}
        mean["reject_min_family"] = min(mean["by_family"].values())
        mean["by_shape"] = {g: float(np.mean([m["by_shape"][g] for m in ms]))
                            for g in SHAPE_GROUPS}
        rows.append((name, mean))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1],
                        help="seeds of the full comparison (default 0 1; none: only LOFO)")
    parser.add_argument("--lofo-seeds", type=int, nargs="*", default=[0],
                        help="seeds for leave-one-family-out (default 0; none: skip it)")
    parser.add_argument("--lofo-families", nargs="+", default=None, choices=negatives.KINDS,
                        help="families to leave out in turn (default all)")
    parser.add_argument("--smoothings", type=float, nargs="+", default=[0.2, 0.0])
    parser.add_argument("--per-kind", type=int, default=60,
                        help="photo-like non-digits per kind (default 60)")
    parser.add_argument("--per-condition", type=int, default=20,
                        help="digit photos per condition, printed and handwritten (default 20)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mnistlab-detectors"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if any(not 0 <= s < 1 for s in args.smoothings):
        parser.error("--smoothings: each must be in [0, 1)")
    if args.per_kind < 1 or args.per_condition < 1:
        parser.error("--per-kind and --per-condition must be at least 1")
    if not args.seeds and not args.lofo_seeds:
        parser.error("nothing to do: no --seeds and no --lofo-seeds")
    if args.lofo_families is not None and not args.lofo_seeds:
        parser.error("--lofo-families: no --lofo-seeds to leave them out on")
    families = args.lofo_families or list(negatives.KINDS)

    torch.set_num_threads(1)
    started = time.perf_counter()
    info = machine()
    data = load_dataset("mnist", download=False)
    result: dict[str, Any] = {"machine": info, "args": {k: str(v) for k, v in vars(args).items()},
                              "seeds": {}, "lofo": {}, "train_seconds": {}}
    per_seed = []
    for seed in args.seeds:
        train_split, val = train_val_split(data.train_images, data.train_labels, 5000, seed)
        normalizer = Normalizer.fit(train_split.images)
        sets = dev_sets(args.per_kind, args.per_condition, val)
        inputs = {"val": normalizer(val.images), "non-digit": normalizer(sets["non-digit"]),
                  "printed": normalizer(sets["printed"]),
                  "handwritten": normalizer(sets["handwritten"])}
        train_x = normalizer(train_split.images)
        rows: dict[str, dict] = {}
        models = {}
        for smoothing in args.smoothings:
            for head in ("oe", "plain", "cls11"):
                model, seconds = train_classifier(head, smoothing, seed, data, args.workdir, None)
                label = f"{head} ls{smoothing:g}"
                models[label] = model
                result["train_seconds"][f"{label} s{seed}"] = seconds
                acc = float((features_and_logits(model, inputs["val"])[1][:, :10].argmax(1)
                             == val.labels).double().mean())
                print(f"seed {seed} {label}: val accuracy {acc:.2%}, {seconds:.1f} s", flush=True)
                for score, s in feature_scores(model, inputs, train_x, train_split.labels,
                                               head != "cls11").items():
                    rows[f"{label} / {score}"] = measure(s, sets["family"], sets["shape"])
        binary, seconds = train_binary(seed, train_split, normalizer, None)
        result["train_seconds"][f"binary s{seed}"] = seconds
        with torch.no_grad():
            b = {k: torch.cat([binary(x[i:i + 1000]).squeeze(1) for i in range(0, len(x), 1000)])
                 for k, x in inputs.items()}
        rows["binary / logit"] = measure(b, sets["family"], sets["shape"])
        default = f"oe ls{args.smoothings[0]:g}"
        cls11 = f"cls11 ls{args.smoothings[0]:g}"
        with torch.no_grad():
            msp = {k: models[default](x).softmax(1).amax(1) for k, x in inputs.items()}
            p_digit = {k: 1 - models[cls11](x).softmax(1)[:, 10] for k, x in inputs.items()}
        rows[f"{default} + binary / max-softmax AND binary"] = measure(
            and_rule(msp, b), sets["family"], sets["shape"])
        rows[f"{cls11} + binary / p(digit) AND binary"] = measure(
            and_rule(p_digit, b), sets["family"], sets["shape"])
        per_seed.append(rows)
        result["seeds"][seed] = rows
        print(f"\n### seed {seed}: rejection (%) at the threshold keeping {ACCEPT:.1%} of "
              f"validation digits\n")
        print_table(list(rows.items()))
        if seed == args.seeds[0]:
            result["costs"] = timing(models[default], binary, train_x,
                                            train_split.labels, inputs["non-digit"])
            print("\ncosts, side by side, 1 thread:")
            for what, value in result["costs"].items():
                print(f"  {what}: {value:.3f}")
            print("training seconds: " + ", ".join(
                f"{k} {v:.1f}" for k, v in result["train_seconds"].items()))

    if len(args.seeds) > 1:
        print(f"\n### mean over seeds {args.seeds}\n")
        print_table(mean_rows(per_seed))

    for seed in args.lofo_seeds:
        train_split, val = train_val_split(data.train_images, data.train_labels, 5000, seed)
        normalizer = Normalizer.fit(train_split.images)
        neg_images, neg_kinds = negatives.load_bank(DEV_NEG_SIZE, DEV_NEG_SEED, "holdout")
        train_x = normalizer(train_split.images)
        table: dict[str, dict[str, float]] = {}
        for family in families:
            mask = neg_kinds == negatives.KINDS.index(family)
            inputs = {"val": normalizer(val.images),
                      "non-digit": normalizer(torch.from_numpy(neg_images[mask].copy()))}
            cells: dict[str, float] = {}
            for head in ("oe", "cls11"):
                model, _ = train_classifier(head, args.smoothings[0], seed, data, args.workdir,
                                            family)
                if head == "oe":
                    oe_model = model
                for score, s in feature_scores(model, inputs, train_x, train_split.labels,
                                               head == "oe").items():
                    cells[f"{head} ls{args.smoothings[0]:g} / {score}"] = rejection(s)
            binary, _ = train_binary(seed, train_split, normalizer, family)
            with torch.no_grad():
                b = {k: binary(x).squeeze(1) for k, x in inputs.items()}
            cells["binary / logit"] = rejection(b)
            with torch.no_grad():
                msp = {k: oe_model(x).softmax(1).amax(1) for k, x in inputs.items()}
            cells["oe + binary / max-softmax AND binary"] = rejection(and_rule(msp, b))
            table[family] = cells
            print(f"leave out {family}: " + ", ".join(f"{k} {pct(v)}" for k, v in cells.items()),
                  flush=True)
        result["lofo"][seed] = table
        print(f"\n### leave-one-family-out, seed {seed}: rejection (%) of the family left out "
              "of training\n")
        names = list(next(iter(table.values())))
        print("| detector | " + " | ".join(table) + " | min |")
        print("|---|" + "---:|" * (len(table) + 1))
        for n in names:
            vals = [table[f][n] for f in table]
            print(f"| {n} | " + " | ".join(pct(v) for v in vals) + f" | {pct(min(vals))} |")

    print(f"\n{info['cpu']}, torch {info['torch']}, 1 thread, load average at start "
          f"{info['load_average_at_start']}, {time.perf_counter() - started:.0f} s in all")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
