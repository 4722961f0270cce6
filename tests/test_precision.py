"""Precision and layout chosen by measurement (mnistlab.train.precision), the cache of its
verdicts, and the device questions it asks (mnistlab.device), CUDA ones through mocks.

No speed is asserted here: a candidate made slow on purpose (a sleep far longer than the
step) must lose, whatever the machine's load.
"""

from __future__ import annotations

import contextlib
import io
import json
import time

import pytest
import torch
from torch import nn

from mnistlab import device as dev
from mnistlab.train import precision
from mnistlab.train.precision import Candidate, cache_key, choose

CPU = torch.device("cpu")
SLOW = 0.1  # seconds added to a step of the candidate that must lose; a step is ~2 ms


class Tiny(nn.Module):
    """A conv net of a few hundred parameters that can make itself slow under bf16
    autocast and/or with channels-last input, to check that measurement rejects them."""

    def __init__(self, slow_bf16: bool = False, slow_channels_last: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=2)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 13 * 13, 10)
        self.slow_bf16, self.slow_channels_last = slow_bf16, slow_channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.slow_bf16 and torch.is_autocast_enabled("cpu"):
            time.sleep(SLOW)
        h = self.conv(x)  # (a 1-channel input looks contiguous in both layouts; h does not)
        if self.slow_channels_last and not h.is_contiguous():
            time.sleep(SLOW)
        return self.fc(self.drop(h).flatten(1))


def batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.fixture(autouse=True)
def one_thread():
    """Two threads on a machine that other processes keep busy stall each other for tens of
    milliseconds per step, which would drown the planted slowness; one thread does not."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def steady(monkeypatch):
    """Other processes make step times vary, and a varying measurement is not cached; the
    cache tests need it cached (the busy-machine rule has its own test)."""
    monkeypatch.setattr(precision, "BUSY_SPREAD", float("inf"))


@pytest.fixture
def fast_bf16_cpu(monkeypatch):
    """A CPU that reports native bf16, so that `auto` measures both precisions."""
    monkeypatch.setattr(dev, "_cpuinfo", lambda: {"model name": "Test CPU",
                                                  "flags": "fpu avx512f avx512_bf16"})


@pytest.fixture
def no_bf16_cpu(monkeypatch):
    monkeypatch.setattr(dev, "_cpuinfo", lambda: {"model name": "Old CPU", "flags": "fpu sse2"})


# ---- the choice ----------------------------------------------------------------------------

@pytest.mark.parametrize("slow_bf16, slow_cl, expected", [
    (True, False, Candidate(False, False)),   # bf16 slow: one of the fp32 candidates wins...
    (True, True, Candidate(False, False)),    # ...and the contiguous one if channels-last is slow
    (False, True, Candidate(True, False)),    # channels-last slow: a contiguous one wins
])
def test_a_candidate_made_slow_is_rejected(tmp_path, fast_bf16_cpu, slow_bf16, slow_cl,
                                           expected):
    model = Tiny(slow_bf16=slow_bf16, slow_channels_last=slow_cl)
    verdict = choose(model, batch(), CPU, path=tmp_path / "p.json")
    assert verdict.source == "measured"
    assert set(verdict.seconds_per_step) == {"fp32", "fp32 + channels-last", "bf16",
                                             "bf16 + channels-last"}
    if slow_bf16:
        assert not verdict.choice.bf16
    if slow_cl:
        assert not verdict.choice.channels_last
    if slow_bf16 and slow_cl:
        assert verdict.choice == expected
    slow = [label for label in verdict.seconds_per_step
            if (slow_bf16 and label.startswith("bf16")) or (slow_cl and "channels" in label)]
    assert all(verdict.seconds_per_step[label] >= SLOW for label in slow)
    assert "precision: " + verdict.choice.label in verdict.describe()
    assert "faster than" in verdict.describe() and "Test CPU" in verdict.describe()


def test_the_injected_timer_decides(fast_bf16_cpu):
    """The clock is injectable: one that charges a second to every bf16 step makes the
    measurement reject bf16, whatever the hardware does."""
    last = {"bf16": False}
    penalty = {"s": 0.0}

    class Recording(Tiny):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            last["bf16"] = torch.is_autocast_enabled("cpu")
            return super().forward(x)

    def timer() -> float:
        if last["bf16"]:  # read right after a bf16 step
            penalty["s"] += 1.0
            last["bf16"] = False
        return time.perf_counter() + penalty["s"]

    verdict = choose(Recording(), batch(), CPU, timer=timer, use_cache=False)
    assert not verdict.choice.bf16
    assert verdict.seconds_per_step["bf16"] >= 1.0 > verdict.seconds_per_step["fp32"]


def test_forced_settings_measure_only_what_is_left(tmp_path, fast_bf16_cpu, monkeypatch):
    v = choose(Tiny(), batch(), CPU, bf16="off", channels_last=False, path=tmp_path / "p.json")
    assert v.source == "forced" and v.choice == Candidate(False, False)
    assert "--bf16 off" in v.describe() and "--no-channels-last" in v.describe()
    assert not (tmp_path / "p.json").exists()  # nothing measured, nothing cached
    v = choose(Tiny(slow_channels_last=True), batch(), CPU, bf16="on", channels_last=None,
               path=tmp_path / "p.json")
    assert v.source == "measured" and set(v.seconds_per_step) == {"bf16", "bf16 + channels-last"}
    assert v.choice == Candidate(True, False)


def test_no_native_bf16_means_fp32_without_measuring_bf16(tmp_path, no_bf16_cpu):
    v = choose(Tiny(), batch(), CPU, path=tmp_path / "p.json")
    assert not v.choice.bf16 and set(v.seconds_per_step) == {"fp32", "fp32 + channels-last"}
    assert "no native bf16" in v.describe()
    # ...but `--bf16 on` is honoured there (slowly): the run trains and tests in bf16.
    assert choose(Tiny(), batch(), CPU, bf16="on", channels_last=True).choice.bf16


def test_a_model_without_convolutions_has_no_layout_choice(tmp_path, fast_bf16_cpu):
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    v = choose(mlp, batch(), CPU, path=tmp_path / "p.json")
    assert not v.choice.channels_last and set(v.seconds_per_step) == {"fp32", "bf16"}
    assert "channels-last does not apply" in v.describe()


def test_measuring_restores_the_rng_and_leaves_the_model_alone(fast_bf16_cpu):
    model = Tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    choose(model, batch(), CPU, use_cache=False)
    assert torch.equal(torch.get_rng_state(), rng)  # dropout in the measured steps used none
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
        assert v.is_contiguous()  # the copies went channels-last, not the model


# ---- the cache -----------------------------------------------------------------------------

def test_a_cached_verdict_is_reused_and_measured_again_when_the_key_changes(tmp_path,
                                                                           fast_bf16_cpu,
                                                                           monkeypatch):
    path = tmp_path / "precision.json"
    first = choose(Tiny(), batch(), CPU, path=path)
    assert first.source == "measured" and first.cached_now and path.is_file()

    def must_not_measure(*_a, **_k):
        raise AssertionError("measured again although the verdict is cached")

    real_measure = precision.measure
    monkeypatch.setattr(precision, "measure", must_not_measure)
    again = choose(Tiny(), batch(), CPU, path=path)
    assert again.source == "cached" and again.choice == first.choice
    assert "cached verdict of" in again.describe()
    monkeypatch.setattr(precision, "measure", real_measure)
    # Another batch size is another key: measured again, and both verdicts are kept.
    other = choose(Tiny(), batch(16), CPU, path=path)
    assert other.source == "measured"
    assert len(json.loads(path.read_text())["entries"]) == 2


def test_the_cache_key_changes_with_each_of_its_inputs(monkeypatch, fast_bf16_cpu):
    from mnistlab.models import create_model

    cands = [Candidate(False, False), Candidate(True, True)]
    model = create_model("fast")
    base = cache_key(CPU, model, 128, cands)
    assert base["model"] == "fast" and base["model_args"] == {"width": 16}
    variants = [
        cache_key(CPU, create_model("fast", width=8), 128, cands),
        cache_key(CPU, create_model("lenet5"), 128, cands),
        cache_key(CPU, model, 256, cands),
        cache_key(CPU, model, 128, cands[:1]),
    ]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        variants.append(cache_key(CPU, model, 128, cands))
    finally:
        torch.set_num_threads(threads)
    assert cache_key(CPU, create_model("fast"), 128, cands) == base  # and it is stable
    version = torch.__version__
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    variants.append(cache_key(CPU, model, 128, cands))
    monkeypatch.setattr(torch, "__version__", version)
    monkeypatch.setattr(dev, "_cpuinfo", lambda: {"model name": "Intel(R) Xeon(R)",
                                                  "flags": "fpu avx512_bf16"})
    variants.append(cache_key(CPU, model, 128, cands))
    monkeypatch.setattr(dev, "_cpuinfo", lambda: {"model name": "Test CPU",
                                                  "flags": "fpu avx512_bf16 amx_bf16"})
    variants.append(cache_key(CPU, model, 128, cands))  # same name, other flags
    digests = {precision.key_digest(k) for k in [base, *variants]}
    assert len(digests) == 1 + len(variants)


@pytest.mark.parametrize("content", ["{not json", "[]", '{"format": 0, "entries": {}}',
                                     '{"format": 1, "entries": []}', ""])
def test_a_corrupt_cache_file_is_ignored_with_a_note_and_rewritten(tmp_path, fast_bf16_cpu,
                                                                   content):
    path = tmp_path / "precision.json"
    path.write_text(content)
    v = choose(Tiny(), batch(), CPU, path=path)
    assert v.source == "measured"
    assert any("ignored the unreadable precision cache" in n for n in v.notes)
    assert len(json.loads(path.read_text())["entries"]) == 1  # rewritten, readable


def test_a_stale_entry_is_ignored_with_a_note(tmp_path, fast_bf16_cpu, monkeypatch):
    path = tmp_path / "precision.json"
    choose(Tiny(), batch(), CPU, path=path)
    data = json.loads(path.read_text())
    (digest, entry), = data["entries"].items()
    entry["choice"] = "fp16 + something"  # a label no candidate has (e.g. an older version)
    path.write_text(json.dumps(data))
    v = choose(Tiny(), batch(), CPU, path=path)
    assert v.source == "measured" and any("stale or damaged entry" in n for n in v.notes)
    assert json.loads(path.read_text())["entries"][digest]["choice"] == v.choice.label


def test_a_verdict_measured_on_a_busy_machine_is_not_cached(tmp_path, fast_bf16_cpu,
                                                            monkeypatch):
    def busy(_model, _batch, _device, cands, *_a, **_k):
        return {c.label: [0.01, 0.05, 0.06] for c in cands}  # the median is 5x the quickest

    monkeypatch.setattr(precision, "measure", busy)
    monkeypatch.setattr(precision, "BUSY_SPREAD", 1.5)
    path = tmp_path / "precision.json"
    v = choose(Tiny(), batch(), CPU, path=path)
    assert v.source == "measured" and not v.cached_now and not path.exists()
    assert any("not cached" in n for n in v.notes) and "; cached" not in v.describe()


def test_an_unwritable_cache_does_not_stop_a_run(tmp_path, fast_bf16_cpu):
    blocker = tmp_path / "file"
    blocker.write_text("")
    v = choose(Tiny(), batch(), CPU, path=blocker / "precision.json")  # parent is a file
    assert v.source == "measured" and any("could not write" in n for n in v.notes)


# ---- in a training run -----------------------------------------------------------------------

def test_a_run_prints_and_records_its_measured_choice(tmp_path, synthetic_data, fast_bf16_cpu):
    from mnistlab.train import resolve_config, train

    out = io.StringIO()
    config = resolve_config(model="fast", model_args={"width": 4}, epochs=1, batch_size=50,
                            val_size=100, runs_dir=str(tmp_path), name="r", threads=1)
    assert config.bf16 == "auto" and config.channels_last is None
    result = train(config, data=synthetic_data, stream=out)
    line = next(x for x in out.getvalue().splitlines() if x.startswith("precision: "))
    resolved = json.loads((result.run_dir / "config.json").read_text())["resolved"]
    label = ("bf16" if resolved["bf16"] else "fp32") + (
        " + channels-last" if resolved["channels_last"] else "")
    assert line.startswith(f"precision: {label} (measured ")
    assert result.summary["bf16"] is resolved["bf16"]


def test_a_resumed_run_keeps_the_precision_it_started_in(tmp_path, synthetic_data,
                                                         fast_bf16_cpu, monkeypatch):
    from mnistlab.train import resolve_config, train

    config = resolve_config(model="fast", model_args={"width": 4}, epochs=2, batch_size=50,
                            val_size=100, runs_dir=str(tmp_path), name="r", threads=1,
                            channels_last=False)
    seen: list[str] = []
    real_choose = precision.choose

    def forced_bf16_first(model, b, device, bf16="auto", channels_last=None, **kw):
        seen.append(bf16)
        if bf16 == "auto":  # the first session "measures" bf16 as the faster
            return precision.Verdict(Candidate(True, False), "forced", "test")
        return real_choose(model, b, device, bf16, channels_last, **kw)

    monkeypatch.setattr(precision, "choose", forced_bf16_first)
    first = train(config, data=synthetic_data, stream=io.StringIO(), max_epochs=1)
    resumed = train(config, data=synthetic_data, stream=io.StringIO(), resume=first.run_dir)
    assert seen == ["auto", "on"]  # the resumed session was told the recorded precision
    assert resumed.summary["bf16"] is True


def test_bf16_on_without_native_bf16_evaluates_in_bf16_as_it_was_tested(tmp_path,
                                                                         synthetic_data,
                                                                         no_bf16_cpu):
    """Issue 12: `--bf16 on` on a CPU without fast bf16 trained and tested in bf16 but
    `eval` re-evaluated in fp32. The checkpoint records the precision; eval uses it."""
    from mnistlab.checkpoint import evaluation_bf16, load_model
    from mnistlab.data.pipeline import Split
    from mnistlab.evaluate import evaluate
    from mnistlab.train import resolve_config, train

    config = resolve_config(model="fast", model_args={"width": 4}, epochs=1, batch_size=50,
                            val_size=100, runs_dir=str(tmp_path), name="r", threads=1,
                            bf16="on")
    result = train(config, data=synthetic_data, stream=io.StringIO())
    assert result.summary["bf16"] is True
    model, normalizer, state = load_model(result.run_dir)
    assert evaluation_bf16(state, CPU) is True
    test = Split(synthetic_data.test_images, synthetic_data.test_labels)
    again = evaluate(model, test, normalizer, bf16=evaluation_bf16(state, CPU))
    assert again.correct == result.summary["test"]["correct"]


# ---- the device questions, CUDA through mocks ----------------------------------------------

class FakeCuda:
    """torch.cuda as far as mnistlab.device asks it: GPU 0 is old (no native bf16), GPU 1
    is an Ampere; the current device is 0."""

    def __init__(self) -> None:
        self.current = 0
        self.asked: list[tuple[int, bool]] = []

    def is_available(self) -> bool:
        return True

    def device_count(self) -> int:
        return 2

    def current_device(self) -> int:
        return self.current

    @contextlib.contextmanager
    def device(self, index: int):
        previous, self.current = self.current, index
        try:
            yield
        finally:
            self.current = previous

    def is_bf16_supported(self, including_emulation: bool = True) -> bool:
        self.asked.append((self.current, including_emulation))
        return self.current == 1 or including_emulation  # GPU 0 only emulates bf16

    def get_device_name(self, index: int) -> str:
        return ["Tesla T4", "NVIDIA A100"][index]


@pytest.fixture
def fake_cuda(monkeypatch):
    fake = FakeCuda()
    for name in ("is_available", "device_count", "current_device", "device",
                 "is_bf16_supported", "get_device_name"):
        monkeypatch.setattr(torch.cuda, name, getattr(fake, name))
    return fake


def test_cuda_bf16_asks_the_chosen_gpu_without_emulation(fake_cuda):
    assert dev.bf16_runs(torch.device("cuda:1")) is True
    assert fake_cuda.asked == [(1, False)] and fake_cuda.current == 0  # restored
    assert dev.bf16_runs(torch.device("cuda:0")) is False  # emulation does not count
    assert dev.bf16_runs(torch.device("cuda")) is False  # `cuda` is the current GPU, 0
    assert all(not emulation for _, emulation in fake_cuda.asked)
    assert dev.hardware_name(torch.device("cuda:1")) == "cuda NVIDIA A100"
    assert dev.hardware_name(torch.device("cuda")) == "cuda Tesla T4"


def test_cuda_bf16_on_is_refused_on_a_gpu_without_native_bf16(fake_cuda):
    from mnistlab.errors import MnistlabError

    assert dev.use_bf16("on", torch.device("cuda:1")) is True
    with pytest.raises(MnistlabError, match="cuda:0 has no native bf16"):
        dev.use_bf16("on", torch.device("cuda:0"))
    cands, why = precision.candidates(torch.device("cuda:0"), "auto", None, True)
    assert {c.bf16 for c in cands} == {False} and any("no native bf16" in w for w in why)
    cands, _ = precision.candidates(torch.device("cuda:1"), "auto", None, True)
    assert {c.bf16 for c in cands} == {False, True}


def test_resolve_device_checks_the_index(fake_cuda):
    from mnistlab.errors import MnistlabError

    assert dev.resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(MnistlabError, match="there are 2 CUDA GPUs"):
        dev.resolve_device("cuda:2")


def test_mps_is_offered_no_bf16():
    mps = torch.device("mps")
    assert dev.bf16_runs(mps) is False
    cands, _ = precision.candidates(mps, "auto", None, True)
    assert {c.bf16 for c in cands} == {False}


def test_deterministic_runs_are_not_measured(tmp_path, synthetic_data, fast_bf16_cpu,
                                             monkeypatch):
    """A timed choice can differ between two runs; --deterministic promises that they agree."""
    from mnistlab.train import resolve_config, train

    def must_not_measure(*_a, **_k):
        raise AssertionError("a --deterministic run measured its precision")

    monkeypatch.setattr(precision, "measure", must_not_measure)
    out = io.StringIO()
    config = resolve_config(model="fast", model_args={"width": 4}, epochs=1, batch_size=50,
                            val_size=100, runs_dir=str(tmp_path), name="d", threads=1,
                            deterministic=True)
    result = train(config, data=synthetic_data, stream=out)
    assert "precision: fp32 (--deterministic: not measured" in out.getvalue()
    resolved = json.loads((result.run_dir / "config.json").read_text())["resolved"]
    assert (resolved["bf16"], resolved["channels_last"]) == (False, False)


def test_a_resumed_run_keeps_its_layout(tmp_path, synthetic_data, fast_bf16_cpu, monkeypatch):
    from mnistlab.train import resolve_config, train

    config = resolve_config(model="fast", model_args={"width": 4}, epochs=2, batch_size=50,
                            val_size=100, runs_dir=str(tmp_path), name="r", threads=1,
                            bf16="off")
    layouts: list[object] = []
    real_choose = precision.choose

    def channels_last_first(model, b, device, bf16="auto", channels_last=None, **kw):
        layouts.append(channels_last)
        if channels_last is None:  # the first session "measures" channels-last as faster
            return precision.Verdict(Candidate(False, True), "forced", "test")
        return real_choose(model, b, device, bf16, channels_last, **kw)

    monkeypatch.setattr(precision, "choose", channels_last_first)
    first = train(config, data=synthetic_data, stream=io.StringIO(), max_epochs=1)
    train(config, data=synthetic_data, stream=io.StringIO(), resume=first.run_dir)
    assert layouts == [None, True]  # the resumed session was given the recorded layout
