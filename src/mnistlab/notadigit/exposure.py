"""Outlier exposure: teach the digit classifier to say "none of these" to non-digits.

Hendrycks, Mazeika and Dietterich (2019): next to the usual cross-entropy on digits, show the
network images that are not digits and pull its softmax on them towards uniform. The ten
outputs stay as they are (every zoo model, export and the doctor keep working); what changes
is that a non-digit no longer gets one confident class. After training, a threshold on a
score of the logits is calibrated on the validation split (never the test set) and stored in
best.pt as `digit_gate`; mnistlab.notadigit.gate.DigitGate reads it back.

Per training step (hooks in train/loop.py call `extend` and `split_loss`):

    x = [digits (B) ; negatives (B / PER_DIGITS) ; printed digits (B / PRINTED_PER_DIGITS)]
    loss = CE(digits) + WEIGHT * mean(logsumexp(z) - mean(z) - log 10)   over the negatives' z
                      + CE(printed digits, their labels) * (B / PRINTED_PER_DIGITS) / B

The printed digits (DejaVu fonts, mnistlab.notadigit.negatives variant "printed") are ordinary
positives: MNIST holds only handwriting, and the gate calibrated on it would otherwise also
reject (or misread) printed digits in photos. One forward pass holds all three; the extra
images are three sixteenths of the batch in all (24 with the default batch of 128).

The second term is the cross-entropy from the uniform distribution to softmax(z) less its
floor log 10 (so the KL divergence): zero when all ten logits are equal.

The negatives come from a bank drawn once (mnistlab.notadigit.negatives, cached in the user
cache), normalised like the digits once per run; the generator already varies slant,
rotation, pen width and size, so there is no per-epoch augmentation (jittering the whole bank
cost 0.5 s an epoch, 10% of the default run). Which negatives a step gets is a function of
(seed, epoch, step, rank), so `--resume` and DDP (each rank its own draw) need no extra
state.

docs/not-a-digit.md has the design and the measurements.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mnistlab.data.pipeline import Batcher, Normalizer, Split
from mnistlab.errors import MnistlabError
from mnistlab.evaluate import predict_logits
from mnistlab.notadigit.gate import DigitGate

AUTO_DATASETS = ("mnist",)  # auto: on for digits; letters and shapes are not "non-clothing"
# One negative per 8 digits in a batch. The one-epoch default recipe sees half the steps of
# the two-epoch one it replaced, and with one per 16 its gate rejected fewer non-digits
# (benchmarks/realworld.py 85.5% against 91.0%); one per 8 rejects more and, measured over 5
# seeds, costs the digits nothing (docs/speed.md).
PER_DIGITS = 8
PRINTED_PER_DIGITS = 16  # and one printed digit per 16
PRINTED_SIZE, PRINTED_SEED = 2000, 0
WEIGHT = 0.5  # of the uniform cross-entropy on negatives (Hendrycks et al. use 0.5)
BANK_SIZE, BANK_SEED = 4096, 0  # the training negatives
HOLDOUT_SIZE, HOLDOUT_SEED = 2000, 1  # other seed, other fonts and strokes: measured only
SCORE = "max_softmax"  # what the gate thresholds (docs/not-a-digit.md: why not energy)
ACCEPT = 0.995  # share of validation digits the calibrated gate keeps


def enabled(config: Any) -> bool:
    """Whether a run trains with outlier exposure (auto: torch backend on MNIST)."""
    mode = getattr(config, "outlier_exposure", "off")
    if mode == "on":
        return True
    return (mode == "auto" and config.backend == "torch" and config.dataset in AUTO_DATASETS
            and config.val_size > 0)


def setup_outliers(trainer: Any) -> OutlierExposure | None:
    """The trainer's outlier exposure, or None when the run trains without it."""
    config = trainer.config
    if not enabled(config):
        return None
    if config.val_size <= 0:
        raise MnistlabError("--outlier-exposure on needs a validation split to calibrate "
                            "its threshold on (--val-size > 0)")
    return OutlierExposure(trainer)


def uniform_loss(logits: torch.Tensor) -> torch.Tensor:
    """Mean KL divergence from the uniform distribution to softmax(logits): the cross-entropy
    to uniform targets less its floor log(C), so that it is 0 when all logits are equal."""
    logits = logits.float()
    floor = math.log(logits.shape[1])
    return (torch.logsumexp(logits, 1) - logits.mean(1)).mean() - floor


class OutlierExposure:
    def __init__(self, trainer: Any) -> None:
        from mnistlab.notadigit import negatives  # PIL and fonts: only when training with them

        config = trainer.config
        self.device = trainer.device
        self.normalizer: Normalizer = trainer.normalizer
        self.seed, self.rank = config.seed, trainer.dist.rank
        self.per_step = max(1, trainer.train_batches.batch_size // PER_DIGITS)
        images, kinds = negatives.load_bank(BANK_SIZE, BANK_SEED, "train")
        excluded = negatives.kinds_named(config.negatives_exclude)
        if excluded:  # a family left out, to measure rejection of it unseen
            keep = ~np.isin(kinds, [negatives.KINDS.index(k) for k in excluded])
            images = images[keep]
        # Normalised once, like the digits (float32: about 12 MB for 4096 images).
        self.bank = self.normalizer(torch.from_numpy(images.copy()).to(self.device))
        printed, labels = negatives.load_bank(PRINTED_SIZE, PRINTED_SEED, "printed")
        self.printed = self.normalizer(torch.from_numpy(printed.copy()).to(self.device))
        self.printed_labels = torch.from_numpy(labels.copy()).to(self.device)
        self.printed_per_step = max(1, trainer.train_batches.batch_size // PRINTED_PER_DIGITS)
        self.label_smoothing = config.label_smoothing
        self._step_labels = self.printed_labels[:0]
        self.info = {**negatives.info(BANK_SIZE, BANK_SEED, "train"), "exclude": excluded,
                     "bank_used": len(images),
                     "per_step": self.per_step, "weight": WEIGHT, "loss": "uniform",
                     "printed": {**negatives.info(PRINTED_SIZE, PRINTED_SEED, "printed"),
                                 "per_step": self.printed_per_step}}
        self._epoch: int | None = None
        self._order = torch.empty(0, dtype=torch.int64)

    # ---- training ------------------------------------------------------------------------
    def _generator(self, epoch: int) -> torch.Generator:
        seed = (self.seed * 1_000_003 + epoch) * 1_000_003 + self.rank + 7_919
        return torch.Generator().manual_seed(seed % 2**63)

    def _prepare_epoch(self, epoch: int) -> None:
        """This epoch's order of the bank (per rank)."""
        order = torch.randperm(len(self.bank), generator=self._generator(epoch))
        self._order = order.to(self.device)
        self._epoch = epoch

    def extend(self, x: torch.Tensor, epoch: int, batch: int) -> torch.Tensor:
        """The digit batch with this step's negatives appended."""
        if self._epoch != epoch:
            self._prepare_epoch(epoch)
        n = len(self._order)
        start = (batch * self.per_step) % n
        idx = self._order[start : start + self.per_step]
        if len(idx) < self.per_step:  # wrap around the end of the bank
            idx = torch.cat([idx, self._order[: self.per_step - len(idx)]])
        # Printed digits: a draw that depends only on (seed, epoch, batch, rank), like the above.
        key = ((self.seed * 1_000_003 + epoch) * 1_000_003 + batch) * 1_000_003 + self.rank
        printed = torch.randint(len(self.printed), (self.printed_per_step,),
                                generator=torch.Generator().manual_seed((key + 104_729) % 2**63))
        printed = printed.to(self.device)
        self._step_labels = self.printed_labels[printed]
        return torch.cat([x, self.bank[idx].to(x.dtype), self.printed[printed].to(x.dtype)])

    def split_loss(self, logits: torch.Tensor,
                   n_digits: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(the digits' logits, WEIGHT * the negatives' uniform loss + the printed digits'
        cross-entropy, weighted as that many more digits in the batch's mean)."""
        negatives = logits[n_digits : n_digits + self.per_step]
        printed = logits[n_digits + self.per_step :]
        printed_loss = torch.nn.functional.cross_entropy(
            printed.float(), self._step_labels, label_smoothing=self.label_smoothing)
        return (logits[:n_digits], WEIGHT * uniform_loss(negatives)
                + printed_loss * (len(printed) / n_digits))

    # ---- after training: calibrate on validation, measure, store ---------------------------
    @torch.no_grad()
    def calibrate(self, trainer: Any) -> dict[str, Any]:
        """Fit the gate on validation digits (the model holds the best weights), measure it
        on held-out negatives and on the test digits (reported, never used), store it in
        best.pt (and last.pt when it holds the same weights), and print one line."""
        from mnistlab.notadigit import negatives

        limit = 1 if trainer.config.dry_run else None
        val_logits, _ = predict_logits(trainer.model, trainer.val_batches, trainer.bf16, limit)
        gate = DigitGate.calibrate(val_logits, ACCEPT, SCORE, negatives=self.info)
        test_logits, _ = predict_logits(trainer.model, trainer.test_batches, trainer.bf16,
                                        limit)
        hold_images, hold_kinds = negatives.load_bank(HOLDOUT_SIZE, HOLDOUT_SEED, "holdout")
        hold = Batcher(Split(torch.from_numpy(hold_images.copy()),
                             torch.zeros(len(hold_images), dtype=torch.int64)),
                       trainer.config.eval_batch_size, self.normalizer, device=self.device)
        hold_logits, _ = predict_logits(trainer.model, hold, trainer.bf16, limit)
        rejected = ~gate.accepts(hold_logits)
        kinds = torch.from_numpy(hold_kinds[: len(rejected)].copy())
        by_kind = {name: float(rejected[kinds == i].double().mean())
                   for i, name in enumerate(negatives.KINDS) if (kinds == i).any()}
        figures = {
            **gate.to_state(),
            "test_accept": float(gate.accepts(test_logits).double().mean()),
            "holdout_reject": float(rejected.double().mean()),
            "holdout_reject_by_kind": by_kind,
            "holdout": negatives.info(HOLDOUT_SIZE, HOLDOUT_SEED, "holdout"),
        }
        if trainer.dist.is_main:
            self._store(trainer, gate)
        trainer.progress.print(
            f"not a digit: {SCORE} >= {gate.threshold:.3f} keeps {gate.val_accept:.1%} of "
            f"validation digits and {figures['test_accept']:.1%} of test digits; rejects "
            f"{figures['holdout_reject']:.1%} of development non-digits (generated)")
        self.figures = figures
        return figures

    def _store(self, trainer: Any, gate: DigitGate) -> None:
        from mnistlab.checkpoint import load_checkpoint, save_checkpoint

        best = Path(trainer.book.best_path)
        paths = [best]
        if trainer.best["epoch"] == trainer.epoch:  # last.pt holds the same weights
            paths.append(Path(trainer.run.file("last.pt")))
        for path in paths:
            if not path.is_file():
                continue
            state = load_checkpoint(path)
            state.pop("path", None)
            state.pop("format", None)
            state.pop("version", None)
            state["digit_gate"] = gate.to_state()
            save_checkpoint(path, state)

    def record(self, trainer: Any, summary: dict[str, Any]) -> dict[str, Any]:
        """summary.json and config.json with the gate's figures and what trained it."""
        summary = {**summary, "digit_gate": self.figures}
        if trainer.dist.is_main:
            trainer.run.write_summary(summary)
            path = Path(trainer.run.file("config.json"))
            if path.is_file():
                from mnistlab.atomic import write_json

                config = json.loads(path.read_text())
                config["not_a_digit"] = {"outlier_exposure": trainer.config.outlier_exposure,
                                         "trained_with_negatives": True, **self.info}
                write_json(path, config)
        return summary
