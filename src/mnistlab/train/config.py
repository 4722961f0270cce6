"""Every option of a training run, in one dataclass, with named recipes as starting points.

A recipe fills in whatever the user did not set; `config.json` records the resolved values,
so that a run can always be read back and repeated.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from mnistlab.errors import MnistlabError

OPTIMIZERS = ("sgd", "adam", "adamw", "adadelta")
SCHEDULES = ("onecycle", "cosine", "step", "none")
BACKENDS = ("torch", "numpy")


@dataclass
class TrainConfig:
    # what to train on
    dataset: str = "mnist"
    data_dir: str | None = None
    download: bool = True
    val_size: int = 5000  # held out from the training set for model selection
    # what to train
    model: str = "fast"
    model_args: dict[str, Any] = field(default_factory=dict)
    backend: str = "torch"
    # how to train
    epochs: int = 2
    batch_size: int = 128
    eval_batch_size: int = 1000
    optimizer: str = "sgd"
    lr: float = 0.1  # peak of the one-cycle schedule for the default recipe (docs/speed.md)
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    # Epochs the schedule spans; None: all of them. Set when `--resume RUN --epochs N`
    # extends a run: the extra epochs then follow a tail (train.schedule).
    schedule_epochs: int | None = None
    step_size: int = 1  # for schedule=step: epochs between decays
    gamma: float = 0.7  # for schedule=step
    label_smoothing: float = 0.0
    augment: bool = False
    # Elastic distortion added to --augment, in pixels (data.pipeline.Augment); 0: off.
    elastic: float = 0.0
    patience: int | None = None  # early stopping on validation accuracy
    # An exponential moving average of the weights with this decay (train/ema.py): it is
    # what is validated, chosen, tested and saved. None or 0: off.
    ema: float | None = None
    # reject: "not a digit" (docs/not-a-digit.md): train with generated non-digits and store a
    # threshold calibrated on validation; auto = on for MNIST with the torch backend.
    outlier_exposure: str = "off"  # auto | on | off
    # Negative families left out of the training bank (comma-separated notadigit.negatives
    # KINDS): for measuring how rejection carries over to a family never seen.
    negatives_exclude: str = ""
    # An ensemble (train/members.py): this many members, each trained as its own run with
    # another seed (initial weights, batch order) on the same validation split, saved as one
    # model whose softmax is their mean. 1: one model, as usual.
    members: int = 1
    # how to run
    seed: int = 0
    # The seed of the validation split; None: `seed`. With it, runs of other seeds are
    # validated (and chosen) on the same images.
    split_seed: int | None = None
    deterministic: bool = False
    device: str = "auto"
    bf16: str = "auto"  # auto | on | off
    channels_last: bool | None = None  # None: measured at start-up (train/precision.py)
    threads: int | None = None
    track_test: bool = False  # log test metrics every epoch (for curves only; never for selection)
    dry_run: bool = False
    log_interval: int = 50  # steps between metrics.csv step rows
    # where
    runs_dir: str = "runs"
    name: str | None = None
    recipe: str = "default"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def validation_seed(self) -> int:
        """What draws the validation split: `split_seed`, else `seed` (as
        data.split.split_seed_of reads it from a config.json)."""
        return self.seed if self.split_seed is None else self.split_seed

    def validate(self) -> None:
        decay_problem = check_decay(self.ema)
        checks = [
            (self.epochs >= 1, "epochs", f"must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, "batch-size", f"must be at least 1, got {self.batch_size}"),
            (self.eval_batch_size >= 1, "eval-batch-size", "must be at least 1"),
            (self.lr > 0, "lr", f"must be positive, got {self.lr}"),
            (self.val_size >= 0, "val-size", f"must not be negative, got {self.val_size}"),
            (0 <= self.label_smoothing < 1, "label-smoothing", "must be in [0, 1)"),
            (self.weight_decay >= 0, "weight-decay", "must not be negative"),
            (self.optimizer in OPTIMIZERS, "optimizer", f"must be one of {', '.join(OPTIMIZERS)}"),
            (self.schedule in SCHEDULES, "schedule", f"must be one of {', '.join(SCHEDULES)}"),
            (self.backend in BACKENDS, "backend", f"must be one of {', '.join(BACKENDS)}"),
            (self.bf16 in ("auto", "on", "off"), "bf16", "must be auto, on or off"),
            (self.threads is None or self.threads >= 1, "threads", "must be at least 1"),
            (0 <= self.elastic <= MAX_ELASTIC, "elastic",
             f"must be 0 to {MAX_ELASTIC} pixels, got {self.elastic}"),
            (self.elastic == 0 or self.augment, "elastic",
             f"{self.elastic}: elastic distortion is part of the augmentation; add --augment"),
            (self.log_interval >= 1, "log-interval", "must be at least 1"),
            # speed: a zero step divides by zero, a negative gamma trains at a negative rate
            (self.step_size >= 1, "step-size", f"must be at least 1, got {self.step_size}"),
            (self.gamma > 0, "gamma", f"must be positive, got {self.gamma}"),
            (self.momentum >= 0, "momentum", f"must not be negative, got {self.momentum}"),
            (self.patience is None or self.patience >= 1, "patience", "must be at least 1"),
            (self.patience is None or self.val_size > 0, "patience",
             f"{self.patience}: early stopping watches validation accuracy; it needs "
             f"--val-size above 0"),
            (1 <= self.members <= MAX_MEMBERS, "members",
             f"must be 1..{MAX_MEMBERS}, got {self.members}"),
            (self.model != "ensemble", "model", "ensemble: an ensemble is made of members "
             "trained one by one; use --model NAME --members K"),
            (self.members == 1 or not outlier_exposure_enabled(self), "members",
             f"{self.members}: not with outlier exposure (the not-a-digit gate is calibrated "
             f"for one model); add --outlier-exposure off"),
            (decay_problem is None, "ema", decay_problem or ""),
            # reject: outlier exposure (notadigit/exposure.py)
            (self.outlier_exposure in ("auto", "on", "off"), "outlier-exposure",
             f"must be auto, on or off, got '{self.outlier_exposure}'"),
            (self.outlier_exposure != "on" or self.backend == "torch", "outlier-exposure",
             "on: not supported by the numpy backend (the torch trainer only)"),
            *negatives_exclude_checks(self.negatives_exclude),
            (not self.negatives_exclude or outlier_exposure_enabled(self), "negatives-exclude",
             "applies only with outlier exposure (on, or auto on MNIST with the torch backend "
             "and a validation split)"),
        ]
        for ok, name, problem in checks:
            if not ok:
                raise MnistlabError(f"--{name} {problem}")


MAX_ELASTIC = 8.0  # pixels: beyond this a 28x28 digit is torn apart, not bent
MAX_MEMBERS = 16  # models.ensemble.MAX_MEMBERS (not imported: this module imports no torch)


def check_decay(decay: float | None) -> str | None:
    """Why `--ema decay` is unusable, or None when it is fine (None and 0 mean off)."""
    if decay is None or decay == 0:
        return None
    if not 0 < decay < 1:  # NaN too
        return f"must be between 0 and 1 (e.g. 0.999; 0 for off), got {decay}"
    return None


def outlier_exposure_enabled(config: TrainConfig) -> bool:
    from mnistlab.notadigit.exposure import enabled  # the rule's one definition

    return enabled(config)


def negatives_exclude_checks(text: str) -> list[tuple[bool, str, str]]:
    """--negatives-exclude names known negative families and leaves at least one."""
    from mnistlab.notadigit.negatives import KINDS, kinds_named  # the families' definition

    names = kinds_named(text)
    unknown = [n for n in names if n not in KINDS]
    return [(not unknown, "negatives-exclude",
             f"unknown famil{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
             f"known: {', '.join(KINDS)}"),
            (len(set(names)) < len(KINDS), "negatives-exclude",
             "leaves no negative family to train on")]


# Named starting points. `default` is what `mnistlab train` runs with no options.
RECIPES: dict[str, dict[str, Any]] = {
    # speed: the strided net for one epoch at batch 128, one-cycle to lr 0.3, label smoothing
    # 0.2: 99.00-99.13% after one epoch over 5 seeds (docs/speed.md has the search)
    "default": {"model": "fast-strided", "epochs": 1, "batch_size": 128, "lr": 0.3,
                "label_smoothing": 0.2,
                "outlier_exposure": "auto"},  # reject: not-a-digit gate on MNIST
    # Stronger and slower: augmentation, a longer schedule, a net 3.5 times as wide (width 56
    # over 48 chosen on validation, seeds 0-2: docs/speed.md). Every knob was chosen with
    # 5,000 images held out for 24 epochs (`--val-size 5000 --epochs 24`); the final fit then
    # trains on all 60,000 for the same 10,318 steps and keeps its last epoch (a refit, also
    # chosen on validation: docs/speed.md).
    "best": {"model": "fast", "model_args": {"width": 56}, "epochs": 22, "augment": True,
             "lr": 0.1, "batch_size": 128, "label_smoothing": 0.1, "val_size": 0},
    # The official PyTorch example's own recipe, for comparison.
    "pytorch-example": {"model": "pytorch-example", "optimizer": "adadelta", "lr": 1.0,
                        "schedule": "step", "step_size": 1, "gamma": 0.7, "batch_size": 64,
                        "epochs": 14, "weight_decay": 0.0, "momentum": 0.0, "nesterov": False},
}


def numpy_recipe() -> dict[str, Any]:
    """What `--backend numpy` starts from: scratch's DEFAULT_RECIPE (its one definition, the
    recipe measured in docs/scratch.md) in TrainConfig's terms."""
    from mnistlab.scratch.train import DEFAULT_RECIPE  # NumPy only; imported when needed

    arch, fit = DEFAULT_RECIPE["arch"], DEFAULT_RECIPE["train"]
    return {"model": "mlp", "model_args": {"hidden": ",".join(map(str, arch["sizes"][1:-1]))},
            "epochs": fit["epochs"], "batch_size": fit["batch_size"], "optimizer": "sgd",
            "lr": fit["lr"], "momentum": fit["momentum"], "nesterov": False,
            "weight_decay": fit["weight_decay"],
            "schedule": {"constant": "none"}.get(fit["schedule"], fit["schedule"]),
            # what NumPy does: float32 on the CPU, no image layout
            "bf16": "off", "channels_last": False}


def resolve_config(recipe: str = "default", **overrides: Any) -> TrainConfig:
    """Defaults, then the recipe, then the user's explicit options (those not None)."""
    if recipe not in RECIPES:
        raise MnistlabError(f"--recipe: unknown recipe '{recipe}'; choose one of: "
                            f"{', '.join(RECIPES)}")
    explicit = {k: v for k, v in overrides.items() if v is not None}
    base = dict(RECIPES[recipe])
    if explicit.get("backend") == "numpy" and recipe == "default":
        base = numpy_recipe()
    if explicit.get("model", base.get("model")) != base.get("model"):
        # speed: what the recipe tuned for its model (arguments, epochs, batch, rate, smoothing,
        # and a final fit without validation) does not carry over to another model, which
        # gets TrainConfig's defaults instead
        for key in ("model_args", "epochs", "batch_size", "lr", "label_smoothing", "val_size"):
            base.pop(key, None)
    values = {**base, **explicit}
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise MnistlabError(f"unknown training option(s): {', '.join(unknown)}")
    config = TrainConfig(recipe=recipe, **values)
    config.validate()
    return config
