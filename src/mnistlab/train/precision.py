"""Precision (bf16 autocast or fp32) and memory layout (channels-last or not), chosen by
measuring real training steps.

Which combination trains fastest depends on the hardware in ways its feature flags do not
tell: on one AMD EPYC bf16 + channels-last is 1.3x faster than fp32, while an Intel Xeon that
also reports AVX512-BF16 runs bf16 1.35x *slower* (docs/speed.md). So at start-up `choose()`
times a few real training steps (forward, backward and optimiser step, on a copy of the model
and a real batch) of every candidate, round-robin so that a burst of load from another process
hits all candidates alike, and keeps the fastest (each candidate's quickest step: noise only
ever adds time). This takes a fraction of a second. The verdict is cached in the user cache
(`$XDG_CACHE_HOME/mnistlab/precision.json`, else `~/.cache/...`) under a key of everything it
depends on: the hardware (CPU model and flags, or GPU name), the model and its arguments, the
batch size, the thread count, the candidates, and the torch and mnistlab versions; change any
and it is measured again. An unreadable cache file or an entry that does not match its key is
ignored with a note and rewritten.

`--bf16 on|off` and `--channels-last/--no-channels-last` force their half of the choice; the
other half is still measured. A resumed run keeps the precision it started in.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mnistlab import __version__
from mnistlab.atomic import write_text
from mnistlab.device import (
    autocast,
    bf16_runs,
    cpu_has_fast_bf16,
    hardware_name,
    synchronize,
    use_bf16,
)

CACHE_NAME = "precision.json"
CACHE_FORMAT = 1
MAX_ENTRIES = 64  # the oldest verdicts are dropped beyond this
BUSY_SPREAD = 1.5  # median / quickest step of a candidate above this: measured on a busy machine

Batch = tuple[torch.Tensor, torch.Tensor]
Timer = Callable[[], float]


@dataclass(frozen=True)
class Candidate:
    bf16: bool
    channels_last: bool

    @property
    def label(self) -> str:
        return ("bf16" if self.bf16 else "fp32") + (" + channels-last" if self.channels_last
                                                    else "")


@dataclass
class Verdict:
    choice: Candidate
    source: str  # "measured", "cached" or "forced" (a single candidate: nothing to measure)
    hardware: str
    seconds_per_step: dict[str, float] = field(default_factory=dict)  # label -> quickest step
    why: list[str] = field(default_factory=list)  # why candidates were left out
    notes: list[str] = field(default_factory=list)  # e.g. a corrupt cache file was ignored
    measured_at: str = ""
    measuring_seconds: float = 0.0
    cached_now: bool = False  # a fresh measurement that was written to the cache

    def describe(self) -> str:
        """One line for the run's output, e.g. 'precision: fp32 + channels-last (measured
        1.34x faster than bf16 + channels-last, ... on cpu AMD EPYC; cached)'."""
        head = f"precision: {self.choice.label}"
        if self.source == "forced":
            return f"{head} ({'; '.join(self.why) or 'the only candidate'})"
        best = self.seconds_per_step[self.choice.label]
        others = sorted((s / best, label) for label, s in self.seconds_per_step.items()
                        if label != self.choice.label)
        versus = ", ".join(f"{r:.2f}x faster than {label}" for r, label in others)
        where = self.hardware.split(" (flags")[0]  # the flags digest is for the cache key only
        when = (f"cached verdict of {self.measured_at}" if self.source == "cached"
                else f"measured in {self.measuring_seconds:.2f} s"
                + ("; cached" if self.cached_now else ""))
        extra = f"; {'; '.join(self.why)}" if self.why else ""
        return f"{head} (measured {versus} on {where}{extra}; {when})"


def candidates(device: torch.device, bf16: str, channels_last: bool | None,
               has_conv: bool) -> tuple[list[Candidate], list[str]]:
    """What to measure, and why anything was left out. `bf16`: auto|on|off;
    `channels_last`: None to measure, or forced."""
    why: list[str] = []
    bf16_options = [False, True]
    if bf16 == "auto":
        if device.type == "cpu" and not cpu_has_fast_bf16():
            # Without native bf16 every op converts: slow for certain, not worth measuring.
            bf16_options = [False]
            why.append("fp32: this CPU has no native bf16")
        elif not bf16_runs(device):
            bf16_options = [False]
            why.append(f"fp32: no native bf16 on {device.type}")
    else:
        bf16_options = [use_bf16(bf16, device)]  # raises where `on` cannot run
        why.append(f"--bf16 {bf16}")
    if not has_conv:
        layouts = [False]
        if channels_last is None or channels_last:
            why.append("channels-last does not apply (no convolutions)")
    elif channels_last is None:
        layouts = [False, True]
    else:
        layouts = [channels_last]
        why.append("--channels-last" if channels_last else "--no-channels-last")
    return [Candidate(b, c) for b in bf16_options for c in layouts], why


def prepare_step(model: nn.Module, batch: Batch, device: torch.device, candidate: Candidate,
                 make_optimizer: Callable[[nn.Module], torch.optim.Optimizer]
                 ) -> Callable[[], None]:
    """A training step of `candidate` on its own copy of the model, ready to call."""
    net = copy.deepcopy(model).train()
    x, y = batch
    if candidate.channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = make_optimizer(net)

    def step() -> None:
        with autocast(device, candidate.bf16):  # as the training loop does
            logits = net(x)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def measure(model: nn.Module, batch: Batch, device: torch.device,
            cands: Sequence[Candidate],
            make_optimizer: Callable[[nn.Module], torch.optim.Optimizer] | None = None,
            timer: Timer = time.perf_counter, budget_s: float = 0.15, min_rounds: int = 2,
            max_rounds: int = 8) -> dict[str, list[float]]:
    """Each candidate's training-step times, in seconds. After one warm-up step each
    (kernel selection, oneDNN primitive creation), rounds go round-robin until `budget_s` is
    spent (at least `min_rounds`): about a dozen steps, a few percent of an epoch. The global
    RNG is restored afterwards, so that a run's results do not depend on whether its verdict
    came from the cache."""
    if make_optimizer is None:
        def make_optimizer(net: nn.Module) -> torch.optim.Optimizer:
            return torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    try:
        steps = []
        warm_start = timer()
        for c in cands:
            step = prepare_step(model, batch, device, c, make_optimizer)
            step()
            steps.append((c.label, step))
        synchronize(device)
        if timer() - warm_start > 4 * budget_s:
            min_rounds = 1  # very slow steps (a big model, a busy machine): one round only
        times: dict[str, list[float]] = {label: [] for label, _ in steps}
        start = timer()
        for round_ in range(max_rounds):
            for label, step in steps:
                t0 = timer()
                step()
                synchronize(device)
                times[label].append(timer() - t0)
            if round_ + 1 >= min_rounds and timer() - start > budget_s:
                break
        return times
    finally:
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state(cuda_rng, device)


# ---- the cache ---------------------------------------------------------------------------

def cache_path() -> Path:
    from mnistlab.data.locate import cache_root

    return cache_root() / CACHE_NAME


def cache_key(device: torch.device, model: nn.Module, batch_size: int,
              cands: Sequence[Candidate]) -> dict[str, Any]:
    """Everything a verdict depends on; a verdict is reused only for an equal key."""
    spec = getattr(model, "mnistlab_spec", None) or {"name": type(model).__qualname__,
                                                     "kwargs": {}}
    return {"hardware": hardware_name(device), "model": spec["name"],
            "model_args": json.loads(json.dumps(spec["kwargs"], sort_keys=True, default=str)),
            "batch_size": int(batch_size), "threads": torch.get_num_threads(),
            "candidates": [c.label for c in cands], "torch": torch.__version__,
            "mnistlab": __version__}


def key_digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def _read_entries(path: Path, notes: list[str]) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        if data.get("format") != CACHE_FORMAT or not isinstance(data.get("entries"), dict):
            raise ValueError("not a precision cache of this mnistlab version")
        return data["entries"]
    except (OSError, ValueError, AttributeError) as e:  # JSONDecodeError is a ValueError
        notes.append(f"ignored the unreadable precision cache {path} ({e}); measured again")
        return {}


def _cached(entry: Any, key: dict[str, Any], cands: Sequence[Candidate],
            notes: list[str], path: Path) -> tuple[Candidate, dict[str, float], str] | None:
    """The entry's verdict if it is whole and was made for exactly this key."""
    labels = {c.label: c for c in cands}
    try:
        seconds = {str(k): float(v) for k, v in entry["seconds_per_step"].items()}
        ok = entry["key"] == key and entry["choice"] in labels and set(seconds) == set(labels)
        when = str(entry.get("measured_at", "?"))
    except (KeyError, TypeError, ValueError, AttributeError):
        ok = False
    if not ok:
        notes.append(f"ignored a stale or damaged entry in {path}; measured again")
        return None
    return labels[entry["choice"]], seconds, when


def _write_entries(path: Path, entries: dict[str, Any], notes: list[str]) -> None:
    if len(entries) > MAX_ENTRIES:
        newest = sorted(entries, key=lambda k: str(entries[k].get("measured_at", "")))
        entries = {k: entries[k] for k in newest[-MAX_ENTRIES:]}
    try:
        write_text(path, json.dumps({"format": CACHE_FORMAT, "entries": entries}, indent=1,
                                    sort_keys=True) + "\n")
    except OSError as e:  # the cache is an optimisation: a read-only home must not stop a run
        notes.append(f"could not write the precision cache {path} ({e.strerror or e})")


# ---- the choice ------------------------------------------------------------------------

def choose(model: nn.Module, batch: Batch, device: torch.device, bf16: str = "auto",
           channels_last: bool | None = None, *,
           make_optimizer: Callable[[nn.Module], torch.optim.Optimizer] | None = None,
           timer: Timer = time.perf_counter, use_cache: bool = True,
           path: Path | None = None) -> Verdict:
    """The fastest candidate for training `model` on batches like `batch` on `device`."""
    has_conv = any(p.dim() == 4 for p in model.parameters())
    cands, why = candidates(device, bf16, channels_last, has_conv)
    hardware = hardware_name(device)
    if len(cands) == 1:
        return Verdict(cands[0], "forced", hardware, why=why)
    notes: list[str] = []
    path = path or cache_path()
    key = cache_key(device, model, len(batch[1]), cands)
    digest = key_digest(key)
    entries = _read_entries(path, notes) if use_cache else {}
    if digest in entries:
        hit = _cached(entries[digest], key, cands, notes, path)
        if hit is not None:
            choice, seconds, when = hit
            return Verdict(choice, "cached", hardware, seconds, why, notes, when)
    if make_optimizer is not None:
        # PyTorch sets up its optimisers on first use (it imports torch._dynamo: 1-2 s).
        # Training pays that anyway; do it before the clock, so the figure printed is what
        # measuring costs.
        make_optimizer(nn.Linear(1, 1))
    start = time.perf_counter()
    times = measure(model, batch, device, cands, make_optimizer, timer)
    took = time.perf_counter() - start
    seconds = {label: min(ts) for label, ts in times.items()}
    choice = min(cands, key=lambda c: seconds[c.label])
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    # A step that varied a lot between rounds means another process was busy: such a verdict
    # serves this run, but is not kept for the next.
    spread = max(statistics.median(ts) / max(min(ts), 1e-12) for ts in times.values())
    steady = spread <= BUSY_SPREAD and all(len(ts) > 1 for ts in times.values())
    if len(next(iter(times.values()))) == 1:
        notes.append("steps were too slow for more than one round of measuring: this "
                     "verdict is not cached")
    elif not steady:
        notes.append(f"step times varied up to {spread:.1f}x while measuring (a busy "
                     "machine?): this verdict is not cached")
    elif use_cache:
        entries[digest] = {"key": key, "choice": choice.label, "seconds_per_step": seconds,
                           "measured_at": when}
        _write_entries(path, entries, notes)
    return Verdict(choice, "measured", hardware, seconds, why, notes, when, took,
                   cached_now=steady and use_cache)


def choose_for_run(config: Any, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                   normalizer: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                   dist: Any, say: Callable[[str], None],
                   resume_state: dict[str, Any] | None = None) -> tuple[bool, bool]:
    """(bf16, channels_last) for a training run: rank 0 decides and tells the other ranks,
    so that every replica computes alike. A resumed run keeps its recorded precision."""
    from mnistlab.train import distributed
    from mnistlab.train.optim import build_optimizer

    bf16, channels_last = config.bf16, config.channels_last
    if resume_state is not None:
        if resume_state.get("bf16") is not None:
            bf16 = "on" if resume_state["bf16"] else "off"
        if channels_last is None:
            channels_last = _recorded_layout(resume_state)
    pick: tuple[bool, bool] | None = None
    if dist.is_main and getattr(config, "deterministic", False) and (
            bf16 == "auto" or channels_last is None):
        # A timed choice can differ between two runs; --deterministic promises they do not.
        has_conv = any(p.dim() == 4 for p in model.parameters())
        pick = (bf16 != "auto" and use_bf16(bf16, device), bool(channels_last) and has_conv)
        say(f"precision: {Candidate(*pick).label} (--deterministic: not measured, so that "
            "the run repeats exactly; --bf16 on and --channels-last to choose)")
    elif dist.is_main:
        batch = first_batch(config, images, labels, normalizer, device, dist)
        verdict = choose(model, batch, device, bf16, channels_last,
                         make_optimizer=lambda net: build_optimizer(net, config))
        say(verdict.describe())
        for note in verdict.notes:
            say(f"note: {note}")
        pick = (verdict.choice.bf16, verdict.choice.channels_last)
    bf16_on, layout = distributed.broadcast_object(pick, dist)
    return bool(bf16_on), bool(layout)


def first_batch(config: Any, images: torch.Tensor, labels: torch.Tensor,
                normalizer: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                dist: Any) -> Batch:
    """A real batch of the run's size per process, for timing steps at start-up."""
    from mnistlab.train import distributed

    n = min(distributed.per_rank_batch(config.batch_size, dist), len(labels))
    return normalizer(images[:n]).to(device), labels[:n].to(device)


def _recorded_layout(state: dict[str, Any]) -> bool | None:
    """The layout a run chose, from the `resolved` block of its config.json (None if not
    recorded), so that a resumed run keeps it."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        config = json.loads((Path(state["path"]).parent / "config.json").read_text())
        value = config["resolved"]["channels_last"]
        if isinstance(value, bool):
            return value
    return None
