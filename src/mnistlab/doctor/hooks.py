"""Kept for imports written before `mnistlab.doctor.config`; import from `mnistlab.doctor`."""

from mnistlab.doctor.config import (
    doctor_before_training,
    examine_config,
    optimizer_factory,
    optimizer_label,
    warmup_lr,
)

__all__ = ["doctor_before_training", "examine_config", "optimizer_factory", "optimizer_label",
           "warmup_lr"]
