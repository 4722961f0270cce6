"""Data-parallel training launched by `torchrun`, read from its environment variables.

`torchrun --nproc_per_node=2 -m mnistlab train ...` sets RANK, WORLD_SIZE and LOCAL_RANK;
each process then trains on its own shard of every epoch's permutation, gradients are
averaged by DistributedDataParallel (gloo on CPUs, NCCL on GPUs), and only rank 0 writes.

`--batch-size` is the global batch: each of N ranks takes batch_size / N images per step,
so a run takes the same number of steps with the same learning rate as on one process and
reaches the same accuracy (within noise). BatchNorm stays per-rank (no SyncBatchNorm):
MNIST batches of 32+ per rank give stable statistics, SyncBatchNorm would add two
all-reduces per BN layer per step, and DDP broadcasts rank 0's running statistics every
forward pass, so evaluation and checkpoints see one consistent set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from mnistlab.device import resolve_device
from mnistlab.errors import MnistlabError

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_environment() -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if "RANK" not in os.environ:
        raise MnistlabError(f"WORLD_SIZE={world} but RANK is not set: launch with torchrun")
    return DistInfo(rank=int(os.environ["RANK"]), world_size=world,
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def setup(device_name: str) -> tuple[DistInfo, torch.device]:
    """Resolve the device (one GPU per local rank) and join the process group if launched so."""
    info = from_environment()
    device = resolve_device(device_name)
    if not info.enabled:
        return info, device
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info, device


def teardown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def per_rank_batch(batch_size: int, info: DistInfo) -> int:
    """The global `batch_size` split evenly across ranks."""
    if batch_size % info.world_size:
        raise MnistlabError(f"--batch-size {batch_size} does not split evenly across "
                            f"{info.world_size} processes; use a multiple of {info.world_size}")
    return batch_size // info.world_size


def broadcast_object(obj: T, info: DistInfo) -> T:
    """Rank 0's `obj` on every rank (e.g. the run name)."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
