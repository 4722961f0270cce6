"""Threads chosen by measurement and kept right while training: the decisions, fed made-up
clocks and rates (never timed), and their wiring into a training run."""

from __future__ import annotations

import io
import json

import pytest
import torch

from mnistlab.train import clock, resolve_config, train
from mnistlab.train.progress import Progress, format_eta, format_final_line
from mnistlab.train.threads import (
    ThreadChoice,
    ThreadController,
    candidate_counts,
    choose_threads,
    default_threads,
    time_steps,
)


@pytest.fixture(autouse=True)
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


class FakeMachine:
    """A clock, and a step whose duration depends on the thread count and on a load that
    the test switches on and off: what the controller sees, with no real time passing."""

    def __init__(self, seconds: dict[int, float]) -> None:
        self.now = 0.0
        self.threads = max(seconds)
        self.seconds = dict(seconds)  # thread count -> seconds per step
        self.calls: list[int] = []  # the thread counts set, in order
        self.steps_run = 0

    def clock(self) -> float:
        return self.now

    def set_threads(self, n: int) -> None:
        self.threads = n
        self.calls.append(n)

    def step(self) -> None:
        self.steps_run += 1
        self.now += self.seconds[self.threads]


def run_steps(machine: FakeMachine, control: ThreadController, steps: int,
              images: int = 128) -> list[int]:
    """Train `steps` steps; the thread count after each."""
    counts = []
    for _ in range(steps):
        machine.step()
        control.tick(images)
        counts.append(machine.threads)
    return counts


def controller(machine: FakeMachine, **kw) -> ThreadController:
    said: list[str] = []
    control = ThreadController([1, 2], machine.threads, set_threads=machine.set_threads,
                               clock=machine.clock, say=said.append, **kw)
    control.said = said
    return control


QUIET = {1: 0.010, 2: 0.008}  # two threads 1.25x faster
LOADED = {1: 0.030, 2: 0.500}  # another multi-threaded job: two threads collapse


def test_a_quiet_machine_keeps_its_threads():
    machine = FakeMachine(QUIET)
    control = controller(machine)
    counts = run_steps(machine, control, 5000)  # 40 s
    assert set(counts) == {2} and control.changes == []
    assert machine.calls == []  # at the top count there is nothing higher to probe


def test_a_collapse_moves_to_fewer_threads_and_says_why():
    machine = FakeMachine(QUIET)
    control = controller(machine)
    run_steps(machine, control, 500)  # 4 s quiet: the reference is known
    machine.seconds = LOADED
    counts = run_steps(machine, control, 200)
    assert counts[-1] == 1
    [change] = control.changes
    assert (change.old, change.new) == (2, 1)
    assert "fell to" in change.why and "img/s" in change.why
    assert control.said and control.said[0].startswith("threads: 2 -> 1 at step ")
    summary = control.summary()
    assert summary["final"] == 1 and summary["changes"][0]["from"] == 2


def test_back_up_when_the_machine_frees_up_and_probes_back_off_meanwhile():
    machine = FakeMachine(QUIET)
    control = controller(machine, probe_every_s=10.0, max_probe_every_s=40.0)
    run_steps(machine, control, 500)
    machine.seconds = LOADED
    run_steps(machine, control, 4000)  # 120 s of load at one thread
    assert machine.threads == 1
    # Probes of two threads while loaded lost, and came ever less often.
    probes = [i for i, n in enumerate(machine.calls) if n == 2]
    assert len(probes) >= 3
    assert control.probe_every_s == 40.0  # doubled up to the cap
    assert len(control.changes) == 1  # the losing probes changed nothing lasting
    machine.seconds = QUIET
    counts = run_steps(machine, control, 8000)  # 64 s quiet: a probe wins
    assert counts[-1] == 2
    assert (control.changes[-1].old, control.changes[-1].new) == (1, 2)
    assert "freed up" in control.changes[-1].why
    assert control.probe_every_s == 10.0  # reset after a probe that won


def test_under_steady_load_probes_are_rare_and_a_freed_machine_is_seen_at_once():
    machine = FakeMachine(QUIET)
    control = controller(machine)  # the defaults: first blind probe after 60 s
    run_steps(machine, control, 200)
    machine.seconds = LOADED
    slow = 0
    for _ in range(4000):  # 120 s at one thread under load
        machine.step()
        slow += machine.threads == 2
        control.tick(128)
    assert machine.threads == 1
    assert slow <= 6  # the collapse itself (a few steps), then one blind probe at about 60 s
    machine.seconds = QUIET
    before = machine.now
    while control.changes[-1].new != 2 and machine.now - before < 60:
        machine.step()
        control.tick(128)
    assert machine.threads == 2 and machine.now - before < 3.0  # not the next blind probe
    assert "freed up" in control.changes[-1].why and "rose to" in control.changes[-1].why


def test_a_collapse_is_acted_on_at_once_not_at_the_next_probe():
    machine = FakeMachine(QUIET)
    control = controller(machine, probe_every_s=10.0)
    run_steps(machine, control, 200)  # 1.6 s quiet
    machine.seconds = LOADED
    run_steps(machine, control, 40)  # a few collapsed steps, then a trial at one thread
    assert machine.now < 10.0 and machine.threads == 1 and len(control.changes) == 1


def test_a_probe_of_a_collapsed_count_ends_after_one_step():
    machine = FakeMachine(QUIET)
    control = controller(machine, probe_every_s=10.0)
    run_steps(machine, control, 200)
    machine.seconds = LOADED
    run_steps(machine, control, 300)  # now at one thread, until the first probe is due
    assert machine.threads == 1
    machine.calls.clear()
    slow_steps = 0
    for _ in range(1000):  # 30 s at one thread: probes at 10 s, then 20 s later
        machine.step()
        slow_steps += machine.threads == 2
        control.tick(128)
    assert machine.calls.count(2) >= 1
    assert slow_steps == machine.calls.count(2)  # one step at two threads per probe


def test_fewer_threads_that_do_not_help_are_given_up():
    """Slower everywhere (e.g. a memory-bound neighbour): one thread is no better, so the
    run goes back to two and does not flap."""
    machine = FakeMachine(QUIET)
    control = controller(machine)
    run_steps(machine, control, 500)
    machine.seconds = {1: 0.050, 2: 0.040}
    counts = run_steps(machine, control, 3000)  # 120 s
    assert counts[-1] == 2
    assert control.changes == []
    assert 1 in machine.calls  # it did try


def test_a_pause_between_epochs_is_not_a_collapse():
    machine = FakeMachine(QUIET)
    control = controller(machine)
    run_steps(machine, control, 500)
    machine.now += 30.0  # evaluation
    control.begin()
    run_steps(machine, control, 500)
    assert control.changes == [] and set(machine.calls) <= {2}


def test_time_steps_stops_timing_a_hopeless_count():
    machine = FakeMachine({1: 0.03, 2: 1.0})
    times = time_steps(machine.step, [1, 2], set_threads=machine.set_threads,
                       timer=machine.clock, budget_s=0.15)
    assert len(times[2]) == 1  # one collapsed step is enough
    assert len(times[1]) >= 1
    machine = FakeMachine(QUIET)
    times = time_steps(machine.step, [1, 2], set_threads=machine.set_threads,
                       timer=machine.clock, budget_s=0.15)
    assert len(times[1]) == len(times[2]) >= 2  # round-robin, at least two rounds


def test_choose_threads_sets_the_fastest_and_leaves_the_rng_alone():
    machine = FakeMachine(LOADED)
    torch.manual_seed(3)
    before = torch.get_rng_state()

    def step():
        torch.rand(3)  # a step that draws random numbers
        machine.step()

    choice = choose_threads(step, counts=[1, 2], timer=machine.clock,
                            set_threads=machine.set_threads)
    assert choice.threads == 1 and machine.threads == 1 and choice.adaptive
    assert torch.equal(torch.get_rng_state(), before)
    assert "faster than 2" in choice.describe() and "adapts" in choice.describe()
    forced = choose_threads(step, forced=1)
    assert not forced.adaptive and forced.source == "forced"
    assert "--threads 1" in forced.describe() and "does not adapt" in forced.describe()
    assert ThreadController.from_choice(forced) is None
    assert isinstance(ThreadController.from_choice(choice, set_threads=machine.set_threads),
                      ThreadController)


def test_candidate_counts(monkeypatch):
    assert candidate_counts(1) == [1]
    assert candidate_counts(2) == [1, 2]
    assert candidate_counts(8) == [1, 4, 8]
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert default_threads() >= 1


def test_choice_round_trips_to_json():
    choice = ThreadChoice(2, "measured", [1, 2], {1: 0.02, 2: 0.01})
    assert json.loads(json.dumps(choice.to_dict()))["seconds_per_step"] == {"1": 0.02, "2": 0.01}
    assert "2.00x faster than 1" in choice.describe()


# ---- progress when the output is not a terminal --------------------------------------------

class Tick:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_piped_output_gets_a_plain_line_every_few_seconds():
    t = Tick()
    out = io.StringIO()  # not a terminal
    progress = Progress(out, enabled=True, plain_every_s=5.0, clock=t)
    lines = 0
    for _ in range(2000):  # 20 s of 10 ms steps
        t.now += 0.01
        if progress.due():
            progress.update(f"step at {t.now:.2f}")
            lines += 1
    assert 3 <= lines <= 4
    assert "\r" not in out.getvalue() and "\033" not in out.getvalue()
    progress.print("epoch line")  # any whole line restarts the wait
    assert not progress.due()


def test_a_terminal_keeps_its_status_line():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    t = Tick()
    out = Tty()
    progress = Progress(out, enabled=True, clock=t)
    t.now = 1.0
    progress.update("status")
    assert out.getvalue() == "\r\033[Kstatus"
    assert not progress.due()  # redrawn at most every 0.2 s


def test_eta_and_final_line():
    assert format_eta(42.4) == "42 s"
    assert format_eta(125) == "2 min 05 s"
    assert format_eta(3725) == "1 h 02 min"
    line = format_final_line(0.991, 9910, 10000, 5.5, 6.1, "runs/x", 10.7, "the whole command")
    assert "10.7 s in all (the whole command)" in line
    assert "set-up not counted" in format_final_line(0.991, 9910, 10000, 5.5, 6.1, "runs/x")
    line = format_final_line(0.991, 9910, 10000, 5.5, 6.1, "runs/x", 10.7, "the whole command",
                             {"before_trainer": 2.9, "data": 0.3, "model_threads_precision": 1.2,
                              "batches": 0.01, "trainer": 1.6})
    assert ("10.7 s in all (the whole command; before training: Python and imports 2.9 s, "
            "data 0.3 s, threads and precision 1.2 s)") in line
    # a resumed run: its training over all sessions, and this command's share of it
    line = format_final_line(0.991, 9910, 10000, 30.5, 31.0, "runs/x", 10.7, "the whole command",
                             train_seconds_before=25.0)
    assert "30.5 s training in all sessions (5.5 s of it in this one), 10.7 s in all" in line


def test_process_age_and_command_clock():
    age = clock.process_age()
    assert age is None or 0 <= age < 86400 * 365
    try:
        clock.mark_command_start()
        assert clock.command_seconds() >= 0
        assert clock.command_scope().startswith("the whole command")
    finally:
        clock.clear_command_start()
    assert clock.command_seconds() is None and clock.command_scope() == ""


# ---- wired into a run ----------------------------------------------------------------------

def config(tmp_path, name: str, **overrides):
    options = {"model": "mlp", "model_args": {"hidden": "64"}, "epochs": 1, "batch_size": 32,
               "val_size": 100, "runs_dir": str(tmp_path / "runs"), "name": name,
               "bf16": "off", "log_interval": 4, "outlier_exposure": "off", **overrides}
    return resolve_config(**options)


def test_a_run_records_its_thread_choice(tmp_path, synthetic_data, monkeypatch):
    monkeypatch.setattr("mnistlab.train.threads.default_threads", lambda: 2)
    out = io.StringIO()
    result = train(config(tmp_path, "measured"), data=synthetic_data, stream=out)
    threads = result.summary["threads"]
    assert threads["source"] == "measured" and threads["counts"] == [1, 2]
    assert threads["final"] in (1, 2) and isinstance(threads["changes"], list)
    assert "threads: " in out.getvalue() and "adapts while training" in out.getvalue()
    resolved = json.loads((result.run_dir / "config.json").read_text())["resolved"]
    assert resolved["threads_choice"].startswith(str(threads["threads"]))
    assert set(result.summary["startup_seconds"]) >= {"data", "model_threads_precision"}
    assert result.summary["command_seconds"] is None  # library use: no command to time
    assert "since training started (set-up not counted)" in out.getvalue()


def test_forced_and_deterministic_runs_do_not_adapt(tmp_path, synthetic_data):
    out = io.StringIO()
    result = train(config(tmp_path, "forced", threads=1), data=synthetic_data, stream=out)
    assert result.summary["threads"]["source"] == "forced"
    assert "threads: 1 (--threads 1: forced, not measured, does not adapt)" in out.getvalue()
    assert "1 thread," in out.getvalue() and "1 epoch " in out.getvalue()  # singular
    out = io.StringIO()
    result = train(config(tmp_path, "det", deterministic=True), data=synthetic_data, stream=out)
    assert result.summary["threads"]["source"] == "fixed"
    assert "--deterministic: not measured and not adapted" in out.getvalue()


def test_switching_threads_mid_run_leaves_the_random_stream_alone(tmp_path, synthetic_data,
                                                                  monkeypatch):
    """A controller that changes the count at every step: the run draws the same random
    numbers (batches, augmentation) as one that never changes it."""
    def flapping(choice, **kwargs):
        control = ThreadController([1, 2], 1, window_s=0.0, probe_s=0.0, probe_every_s=0.0,
                                   margin=-1.0, collapse=10.0, **kwargs)
        return control

    ends = {}
    for name, adapt in (("fixed", False), ("flapping", True)):
        if adapt:
            monkeypatch.setattr(ThreadController, "from_choice", staticmethod(flapping))
        torch.set_num_threads(1)
        result = train(config(tmp_path, name, threads=None if adapt else 1, augment=True),
                       data=synthetic_data, stream=io.StringIO())
        ends[name] = (torch.get_rng_state(), result.summary["steps"],
                      result.summary["threads"].get("changes"))
    assert torch.equal(ends["fixed"][0], ends["flapping"][0])
    assert ends["fixed"][1] == ends["flapping"][1]
    assert len(ends["flapping"][2]) >= 3  # it did switch, again and again
