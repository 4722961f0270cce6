"""Which speed levers pay on this CPU: training-step throughput of the default model.

The precision/layout rows are what `mnistlab train` measures at start-up on every machine
(mnistlab.train.precision); this script shows them next to the other levers.

    python benchmarks/levers.py [--lock /tmp/mnistlab-cpu.lock] [--no-compile]

Every variant runs the real training step (forward, cross-entropy, backward, SGD-Nesterov,
one-cycle scheduler) on random MNIST-shaped batches. Variants are measured round-robin,
several rounds, and the median is reported, so that a burst of load from elsewhere on a
shared machine hits them all alike. Accuracy effects of the levers come from full runs and
are recorded in docs/speed.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.models import create_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_common import holding


@dataclass
class Variant:
    name: str
    bf16: bool = True
    channels_last: bool = True
    batch: int = 256
    threads: int | None = None
    model: Callable[[], nn.Module] = field(default=lambda: create_model("fast-strided"))
    compile: bool = False
    foreach: bool | None = None


def previous_fast(width: int = 32) -> nn.Module:
    """The default model before the `fast` design: three 3x3 conv-BN-ReLU-pool blocks at
    28/14/7 px."""
    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                nn.ReLU(), nn.MaxPool2d(2)]
    w = width
    return nn.Sequential(*block(1, w), *block(w, 2 * w), *block(2 * w, 4 * w), nn.Flatten(),
                         nn.Linear(36 * w, 10))


def strided_without_fc() -> nn.Module:
    """fast-strided less its hidden fully connected layer (conv features straight to 10)."""
    net = create_model("fast-strided")
    net.classifier = nn.Sequential(nn.Flatten(), nn.Linear(64 * 16, 10))
    return net


VARIANTS = [
    Variant("fast-strided, bf16 + channels-last, batch 256 (the two-epoch default until now)"),
    Variant("fp32 + channels-last", bf16=False),
    Variant("bf16, no channels-last", channels_last=False),
    Variant("fp32, no channels-last", bf16=False, channels_last=False),
    Variant("1 thread", threads=1),
    Variant("batch 128 (the one-epoch default, less its 16 extra images)", batch=128),
    Variant("batch 512", batch=512),
    Variant("batch 288 (256 + outlier exposure's 32 negatives)", batch=288),
    Variant("SGD foreach=True", foreach=True),
    Variant("fast-strided without the hidden fc", model=strided_without_fc),
    Variant("previous default: fast (width 16), batch 128", batch=128,
            model=lambda: create_model("fast")),
    Variant("fast (width 16), batch 256", model=lambda: create_model("fast")),
    Variant("fast-strided width 20", model=lambda: create_model("fast-strided", width=20)),
    Variant("the fast design before (width 32), batch 128", batch=128, model=previous_fast),
]


class Stepper:
    def __init__(self, v: Variant) -> None:
        self.v = v
        torch.manual_seed(0)
        self.model = v.model()
        if v.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.05, momentum=0.9, nesterov=True,
                                   weight_decay=5e-4, foreach=v.foreach)
        self.sched = torch.optim.lr_scheduler.OneCycleLR(self.opt, 0.1, total_steps=10**7)
        self.net = torch.compile(self.model) if v.compile else self.model
        self.x = torch.randn(v.batch, 1, 28, 28)
        self.y = torch.randint(0, 10, (v.batch,))

    def step(self) -> None:
        with torch.autocast("cpu", torch.bfloat16, enabled=self.v.bf16):
            loss = F.cross_entropy(self.net(self.x).float(), self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()

    def rate(self, seconds: float) -> float:
        default_threads = torch.get_num_threads()
        if self.v.threads:
            torch.set_num_threads(self.v.threads)
        try:
            self.step()
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                self.step()
                n += 1
            return n * self.v.batch / (time.perf_counter() - start)
        finally:
            torch.set_num_threads(default_threads)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=1.5, help="per variant per round")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--lock", default=None)
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads for every variant (default: torch's); the threads "
                        "variant then uses the other count (1 <-> 2)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        if args.threads == 1:  # the "1 thread" row becomes the 2-thread one
            VARIANTS[4] = Variant("2 threads", threads=2)
    steppers = [Stepper(v) for v in VARIANTS]
    rates: dict[str, list[float]] = {v.name: [] for v in VARIANTS}
    with holding(args.lock):
        for _ in range(args.rounds):
            for s in steppers:
                rates[s.v.name].append(s.rate(args.seconds))
    rows: list[tuple[str, Any, str]] = []
    base = statistics.median(rates[VARIANTS[0].name])
    for name, r in rates.items():
        m = statistics.median(r)
        rows.append((name, f"{m:,.0f}", f"{m / base:.2f}x"))
    if not args.no_compile:
        with holding(args.lock):
            s = Stepper(Variant("torch.compile (inductor)", compile=True))
            start = time.perf_counter()
            s.step()
            s.step()
            compile_s = time.perf_counter() - start
            m = statistics.median(s.rate(args.seconds) for _ in range(args.rounds))
        rows.append((f"torch.compile (first two steps: {compile_s:.1f} s)", f"{m:,.0f}",
                     f"{m / base:.2f}x"))
    from mnistlab.device import cpu_model

    print(f"CPU {cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"medians of "
          f"{args.rounds} rounds of {args.seconds} s\n")
    print("| variant | train images/s | vs the first row |\n|---|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
