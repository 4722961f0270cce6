"""How many CPU threads PyTorch uses: chosen by measuring, and kept right while work runs.

On a quiet 2-core machine two threads train the default model 1.1-1.3x faster than one. When
another process computes on the same cores, two threads can collapse 20-60x (every small
operation waits for the slower of its two threads, docs/speed.md), while one thread only
loses its share of the CPU. Which count is right therefore depends on the moment, not on the
machine, and is measured twice:

- at start-up, `choose_threads()` times a few real steps of the work at each candidate count
  (1 and N, round-robin, each count's quickest step), and sets the fastest;
- while the work runs, a `ThreadController` is told after every step how many images it
  did. It keeps a reference rate per count (the best window seen at that count); when the
  rate at the current count falls below `collapse` times its reference, it tries the next
  lower count for a short window and keeps whichever was faster. Below the largest count it
  probes the next higher one when its own rate doubles over the best it had there (the
  other work stopped), and otherwise now and then (every `probe_every_s`, doubled after each probe
  that lost, up to `max_probe_every_s`), so that it goes back up when the machine frees up.
  A trial at a count that has collapsed ends after its first step.

Neither decision touches a random number generator, so a run's results do not depend on
them (the step measurements restore the RNG state). `--threads N` forces the count: nothing
is measured and nothing adapts.

Inference-style commands (`eval`, `predict` over many pictures, the doctor's probes, the
benchmarks) call `choose_for_inference`, which first asks whether measuring can pay off at
all (work of a second or so is done at one thread, unmeasured) and otherwise uses
`choose_threads`. The API is small so that other loops can use it:

    choice = choose_threads(step, forced=None)      # times `step` at 1 and N threads, sets it
    print(choice.describe())
    control = ThreadController.from_choice(choice, say=print)
    for batch in batches:
        work(batch)
        control.tick(len(batch))                     # may call torch.set_num_threads
    control.summary()                                # what was chosen, changed, and why
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Clock = Callable[[], float]


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, where the OS has one)."""
    with contextlib.suppress(AttributeError, OSError):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def candidate_counts(default: int | None = None) -> list[int]:
    """1 and PyTorch's default count (the cores), plus half of it on a machine with more
    than 4 cores: the counts worth timing, ascending."""
    import torch

    n = max(1, default or torch.get_num_threads())
    counts = {1, n}
    if n > 4:
        counts.add(n // 2)
    return sorted(counts)


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@dataclass
class ThreadChoice:
    """What `choose_threads` decided: the count, how (measured, forced, fixed) and why."""

    threads: int
    source: str  # "measured", "forced" (--threads N) or "fixed" (not measured: see why)
    counts: list[int] = field(default_factory=list)  # the candidates, ascending
    seconds_per_step: dict[int, float] = field(default_factory=dict)  # count -> quickest step
    why: str = ""
    measuring_seconds: float = 0.0
    # What happens after the choice, as the one-line description says it.
    after: str = "adapts while training"

    @property
    def adaptive(self) -> bool:
        return self.source == "measured" and len(self.counts) > 1

    def describe(self) -> str:
        """One line, e.g. 'threads: 1 (measured 1.8x faster than 2; adapts while training;
        measured in 0.21 s)'."""
        head = f"threads: {self.threads}"
        if self.source != "measured":
            return f"{head} ({self.why})"
        best = self.seconds_per_step[self.threads]
        others = ", ".join(
            (f"{s / best:.2f}x faster than {c}" if s >= best else f"{best / s:.2f}x slower "
             f"than {c}") for c, s in sorted(self.seconds_per_step.items()) if c != self.threads)
        # On a quiet machine N threads are at worst a little slower than one (1.1-1.3x
        # faster, docs/speed.md); twice as slow or worse means other work on the cores.
        busy = (self.threads < max(self.seconds_per_step)
                and max(self.seconds_per_step.values()) >= 2 * best)
        return (f"{head} (measured {others}{'; a busy machine?' if busy else ''}; "
                f"{self.after}; measured in {self.measuring_seconds:.2f} s)")

    def to_dict(self) -> dict[str, Any]:
        return {"threads": self.threads, "source": self.source, "counts": self.counts,
                "seconds_per_step": {str(k): v for k, v in self.seconds_per_step.items()},
                "why": self.why, "measuring_seconds": self.measuring_seconds}


def fixed(threads: int, why: str) -> ThreadChoice:
    """A count that is not measured (and does not adapt); sets it."""
    import torch

    torch.set_num_threads(threads)
    return ThreadChoice(threads, "forced" if why.startswith("--threads") else "fixed",
                        [threads], why=why)


def time_steps(step: Callable[[], None], counts: Sequence[int], *,
               set_threads: Callable[[int], None] | None = None, timer: Clock = time.perf_counter,
               sync: Callable[[], None] = lambda: None, budget_s: float = 0.15,
               min_rounds: int = 2, max_rounds: int = 6,
               hopeless: float = 4.0) -> dict[int, list[float]]:
    """`step`'s times at each thread count, round-robin so that a burst of load from another
    process hits every count alike. One untimed step at the fewest threads first (kernel
    and memory set-up, paid once), then rounds until `budget_s` is spent, at least
    `min_rounds`. A count whose first step took `hopeless` times the quickest first step is
    timed no further (on a busy machine a collapsed count's step can take seconds)."""
    if set_threads is None:
        import torch

        set_threads = torch.set_num_threads
    set_threads(counts[0])
    step()
    sync()
    times: dict[int, list[float]] = {n: [] for n in counts}
    active = list(counts)
    start = timer()
    for round_ in range(max_rounds):
        for n in active:
            set_threads(n)
            t0 = timer()
            step()
            sync()
            times[n].append(timer() - t0)
        if round_ == 0:
            quickest = min(times[n][0] for n in active)
            active = [n for n in active if times[n][0] <= hopeless * quickest]
            if len(active) < 2 or timer() - start > 4 * budget_s:
                break  # nothing left to compare, or slow steps (a big model, a busy machine)
        if round_ + 1 >= min_rounds and timer() - start > budget_s:
            break
    return times


def choose_threads(step: Callable[[], None], *, forced: int | None = None,
                   counts: Sequence[int] | None = None, timer: Clock = time.perf_counter,
                   sync: Callable[[], None] = lambda: None, budget_s: float = 0.15,
                   set_threads: Callable[[int], None] | None = None) -> ThreadChoice:
    """Time `step` (one unit of the real work: a training step, a batch of inference) at
    each candidate count, set the fastest and return the choice. `forced`: that count,
    unmeasured. `step` should leave the RNG as it found it, or not use it."""
    import torch

    set_threads = set_threads or torch.set_num_threads
    if forced is not None:
        return fixed(forced, f"--threads {forced}: forced, not measured, does not adapt")
    counts = sorted(set(counts or candidate_counts()))
    if len(counts) == 1:
        return fixed(counts[0], f"{plural(counts[0], 'core')} available: nothing to choose")
    rng = torch.get_rng_state()
    start = time.perf_counter()
    try:
        times = time_steps(step, counts, set_threads=set_threads, timer=timer, sync=sync,
                           budget_s=budget_s)
    finally:
        torch.set_rng_state(rng)
    took = time.perf_counter() - start
    seconds = {n: min(ts) for n, ts in times.items()}
    best = min(counts, key=lambda n: (seconds[n], -n))
    set_threads(best)
    return ThreadChoice(best, "measured", list(counts), seconds, measuring_seconds=took)


@dataclass
class Change:
    """One change of the thread count while the work ran."""

    step: int
    seconds: float  # since the controller started
    old: int
    new: int
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "seconds": round(self.seconds, 3), "from": self.old,
                "to": self.new, "why": self.why}


class ThreadController:
    """Watches images/s in windows of at least `window_s` seconds and changes the thread
    count when it collapses, and back when the machine frees up (module docstring).

    Every decision comes from `tick(images)` and the injected `clock`, so that tests can
    feed it a made-up series of rates and assert what it does. A trial of another count
    lasts one settling step plus `probe_s`, or ends at its first step when that step took
    `hopeless` times as long as a step at the count it left (a collapsed count on a busy
    machine: one such step is evidence enough). Trials that lose are retried ever less
    often (`probe_every_s`, doubled each time, up to `max_probe_every_s`), separately for
    trying fewer threads and for probing more."""

    def __init__(self, counts: Sequence[int], current: int, *,
                 set_threads: Callable[[int], None] | None = None, clock: Clock = time.perf_counter,
                 say: Callable[[str], None] | None = None, window_s: float = 1.0,
                 probe_s: float = 0.5, collapse: float = 0.5, margin: float = 0.1,
                 hopeless: float = 4.0, freed: float = 2.0, probe_every_s: float = 60.0,
                 max_probe_every_s: float = 480.0) -> None:
        if set_threads is None:
            import torch

            set_threads = torch.set_num_threads
        self.counts = sorted(set(counts))
        if current not in self.counts:
            raise ValueError(f"current count {current} is not a candidate {self.counts}")
        self.current = current
        self.set_threads, self.clock, self.say = set_threads, clock, say
        self.window_s, self.probe_s, self.collapse, self.margin = (window_s, probe_s, collapse,
                                                                   margin)
        self.hopeless, self.freed = hopeless, freed
        # The best rate at each count since the run settled there (or since a probe of more
        # threads last lost): a rise of `freed` times above it is evidence that the machine
        # freed up. The best, not the first: a slow first window must not fake a rise.
        self.floor: dict[int, float] = {}
        self.base_probe_every_s, self.max_probe_every_s = probe_every_s, max_probe_every_s
        self.reference: dict[int, float] = {}  # the best window rate seen at each count
        self.latest: dict[int, float] = {}  # the latest window rate at each count
        self.changes: list[Change] = []
        self.steps = 0
        self.started = clock()
        self.last_tick = self.started
        # A trial: (count tried, count to go back to, why) while one window at another count
        # is measured; None in steady state.
        self.trial: tuple[int, int, str] | None = None
        # Back-off of trials that lost: (seconds between trials, earliest next trial).
        self.every = {"up": probe_every_s, "down": probe_every_s}
        self.next = {"up": self.started + probe_every_s, "down": self.started}
        self.begin()

    @property
    def probe_every_s(self) -> float:
        """The current wait between probes of more threads."""
        return self.every["up"]

    @classmethod
    def from_choice(cls, choice: ThreadChoice, **kwargs: Any) -> ThreadController | None:
        """A controller for a measured choice; None where the count is forced or fixed."""
        if not choice.adaptive:
            return None
        return cls(choice.counts, choice.threads, **kwargs)

    def begin(self) -> None:
        """Start a new window now: call after a pause in the work (e.g. an evaluation), so
        that the pause is not counted as slow steps. The first step after is not counted
        either (it may pay for a new thread team)."""
        self.window_start: float | None = None
        self.window_images = 0
        self.last_tick = self.clock()

    def tick(self, images: int) -> None:
        """One step of the work is done, with `images` images."""
        self.steps += 1
        now = self.clock()
        step_seconds, self.last_tick = now - self.last_tick, now
        if self.trial is not None:
            back = self.trial[1]
            before = self.latest.get(back)
            if before and step_seconds > self.hopeless * images / before:
                self._end_trial(images / max(step_seconds, 1e-9), now)
                return
        if self.window_start is None:  # the settling step
            self.window_start, self.window_images = now, 0
            return
        self.window_images += images
        elapsed = now - self.window_start
        if elapsed < (self.probe_s if self.trial else self.window_s):
            return
        rate = self.window_images / max(elapsed, 1e-9)
        if self.trial is not None:
            self._end_trial(rate, now)
        else:
            self._steady(rate, now)

    # ---- decisions -------------------------------------------------------------------------
    def _end_trial(self, rate: float, now: float) -> None:
        assert self.trial is not None
        tried, back, why = self.trial
        self.trial = None
        self.latest[tried] = rate
        direction = "down" if tried < back else "up"
        before = self.latest.get(back, 0.0)
        if rate > before * (1 + self.margin):
            self.reference[tried] = max(self.reference.get(tried, 0.0), rate)
            self.floor[tried] = rate
            self._record(back, tried, now, f"{why}; {tried} gave {rate:,.0f} img/s "
                         f"against {before:,.0f} at {back}")
            # After a move both back-offs start afresh: a collapse may be acted on at once,
            # a probe of more threads waits its first interval.
            self.every = {"up": self.base_probe_every_s, "down": self.base_probe_every_s}
            self.next = {"up": now + self.base_probe_every_s, "down": now}
        else:
            self._switch(back)
            self.every[direction] = min(self.every[direction] * 2, self.max_probe_every_s)
            self.next[direction] = now + self.every[direction]
            if direction == "up":  # a new rise is needed before the next early probe
                self.floor[back] = max(before, self.floor.get(back, 0.0))
        self.begin()

    def _steady(self, rate: float, now: float) -> None:
        n = self.current
        self.latest[n] = rate
        ref = self.reference.get(n)
        self.reference[n] = max(ref or 0.0, rate)
        floor = self.floor.get(n, rate)
        lower = [c for c in self.counts if c < n]
        higher = [c for c in self.counts if c > n]
        if ref is not None and lower and rate < self.collapse * ref and now >= self.next["down"]:
            self._try(lower[-1], n, f"{plural(n, 'thread')} fell to {rate:,.0f} img/s "
                      f"from {ref:,.0f}")
        elif higher and rate > self.freed * floor:
            # Evidence: the rate rose well above where it settled (the other work stopped).
            self._try(higher[0], n, f"the machine seems to have freed up ({plural(n, 'thread')}"
                      f" rose to {rate:,.0f} img/s from {floor:,.0f})")
        elif higher and now >= self.next["up"]:
            self._try(higher[0], n, "probing whether the machine has freed up")
        else:
            if rate <= 1.25 * floor:  # drift raises the floor; a jump (a window that spans
                self.floor[n] = max(floor, rate)  # the end of the other work) does not
            self.begin()

    def _try(self, count: int, back: int, why: str) -> None:
        self.trial = (count, back, why)
        self._switch(count)
        self.begin()

    def _switch(self, count: int) -> None:
        self.set_threads(count)
        self.current = count

    def _record(self, old: int, new: int, now: float, why: str) -> None:
        change = Change(self.steps, now - self.started, old, new, why)
        self.changes.append(change)
        if self.say is not None:
            self.say(f"threads: {old} -> {new} at step {change.step} ({why})")

    def summary(self) -> dict[str, Any]:
        return {"final": self.current, "changes": [c.to_dict() for c in self.changes],
                "best_images_per_s": {str(k): round(v, 1) for k, v in self.reference.items()}}


# ---- a training run ----------------------------------------------------------------------

def default_threads() -> int:
    """PyTorch's own default count: OMP_NUM_THREADS where set, else the cores available.
    Not torch.get_num_threads(), which an earlier choice in this process may have changed."""
    with contextlib.suppress(KeyError, ValueError):
        n = int(os.environ["OMP_NUM_THREADS"])
        if n >= 1:
            return n
    return available_cores()


def choose_for_run(config: Any, model: Any, batch: tuple[Any, Any], device: Any, dist: Any,
                   say: Callable[[str], None]) -> ThreadChoice:
    """The thread count a training run starts with, said in one line. Measured on the run's
    model and a real batch (fp32 or whatever --bf16/--channels-last force: the precision is
    measured afterwards, at the count chosen here), unless forced, or where a measured count
    would not help or would break a promise."""
    import torch

    from mnistlab.train.precision import Candidate, prepare_step

    if config.threads:
        choice = choose_threads(lambda: None, forced=config.threads)
    elif device.type != "cpu":
        choice = fixed(torch.get_num_threads(),
                       f"PyTorch's default; on {device.type} the CPU threads only feed the device")
    elif dist.enabled:
        choice = fixed(torch.get_num_threads(), "torchrun sets each process's threads")
    elif getattr(config, "deterministic", False):
        n = default_threads()
        choice = fixed(n, "PyTorch's default; --deterministic: not measured and not adapted, "
                          "so that the run repeats exactly; --threads N to choose")
    else:
        from mnistlab.train.optim import build_optimizer

        has_conv = any(p.dim() == 4 for p in model.parameters())
        candidate = Candidate(config.bf16 == "on",
                              bool(config.channels_last) and has_conv)
        step = prepare_step(model, batch, device, candidate,
                            lambda net: build_optimizer(net, config))
        choice = choose_threads(step, counts=candidate_counts(default_threads()))
    if dist.is_main:
        say(choice.describe())
    return choice


# ---- inference-style work: eval, predict over many pictures, the doctor, benchmarks --------

# Measuring costs a warm-up step and at least two timed rounds of every count, or
# `choose_threads`'s 0.15 s budget if that is more; on a quiet machine the most N threads
# have saved over one is about a quarter of the time (1.1-1.3x, docs/speed.md). So measuring
# can pay for itself only when the work is several times what measuring costs: PAYS_OFF
# times, estimated from one timed step at one thread. Shorter work (the 10,000 MNIST test
# images through a small net: well under a second) keeps one thread, unmeasured: one thread
# cannot collapse when other work shares the cores, while two can, 40-66x.
PAYS_OFF = 5.0
MEASURE_BUDGET_S = 0.15


def check_forced(threads: int | None) -> int | None:
    """`--threads N` as given: None (measure) or at least 1, else a one-line error."""
    from mnistlab.errors import MnistlabError

    if threads is not None and threads < 1:
        raise MnistlabError(f"--threads must be at least 1, got {threads}")
    return threads


def forward_step(model: Any, x: Any, *, bf16: bool = False) -> Callable[[], None]:
    """One forward pass of `model` on `x` without gradients, in eval mode (as inference runs
    it; the model's mode is put back after each call)."""
    import torch

    from mnistlab.device import autocast

    def step() -> None:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), autocast(x.device, bf16):
                model(x)
        finally:
            model.train(was_training)

    return step


def choose_for_inference(step: Callable[[], None], *, steps: int | None, forced: int | None,
                         device: Any = "cpu", say: Callable[[str], None] | None = None,
                         after: str = "adapts while it runs",
                         counts: Sequence[int] | None = None,
                         set_threads: Callable[[int], None] | None = None,
                         timer: Clock = time.perf_counter,
                         sync: Callable[[], None] = lambda: None) -> ThreadChoice:
    """The thread count for `steps` repetitions of `step` (one batch of the real work),
    set and said in one line. Forced (`--threads N`): that count. On a GPU: PyTorch's
    default, unmeasured. Otherwise one step is timed at one thread to estimate the work;
    work too short to repay measuring (PAYS_OFF) keeps one thread, longer work (or `steps`
    None: long, unknown) is measured at 1 and N threads by `choose_threads`. `after`: what
    the caller does next, for the line ("adapts while evaluating"; "fixed for the probes")."""
    import torch

    set_threads = set_threads or torch.set_num_threads
    check_forced(forced)
    kind = device.type if isinstance(device, torch.device) else torch.device(str(device)).type
    if forced is not None:
        choice = fixed(forced, f"--threads {forced}: forced, not measured, does not adapt")
    elif kind != "cpu":
        choice = fixed(torch.get_num_threads(),
                       f"PyTorch's default; on {kind} the CPU threads only feed the device")
    else:
        counts = sorted(set(counts or candidate_counts(default_threads())))
        short = None
        if len(counts) > 1 and steps is not None:
            rng = torch.get_rng_state()
            try:
                set_threads(1)
                step()  # untimed: kernel and memory set-up, paid once
                sync()
                t0 = timer()
                step()
                sync()
                one = timer() - t0
            finally:
                torch.set_rng_state(rng)
            work = one * steps
            cost = max(MEASURE_BUDGET_S, (1 + 2 * len(counts)) * one)
            if work < PAYS_OFF * cost:
                short = (f"about {work:.2f} s of work at 1 thread: too little for measuring "
                         f"(about {cost:.2f} s) to pay off; 1 thread cannot collapse")
        if len(counts) == 1:
            choice = fixed(counts[0], f"{plural(counts[0], 'core')} available: nothing to choose")
        elif short is not None:
            set_threads(1)
            choice = ThreadChoice(1, "fixed", [1], why=short)
        else:
            choice = choose_threads(step, counts=counts, timer=timer, sync=sync,
                                    budget_s=MEASURE_BUDGET_S, set_threads=set_threads)
            choice.after = after
    if say is not None:
        say(choice.describe())
    return choice
