"""The not-a-digit gate (mnistlab.predict.reject): calibration, fallback, checkpoint round trip."""

from __future__ import annotations

import pytest
import torch

from mnistlab.errors import MnistlabError
from mnistlab.predict.reject import FALLBACK_THRESHOLD, DigitGate, score_logits


def confident(n: int, seed: int = 0, scale: float = 8.0) -> torch.Tensor:
    """Digit-like logits: one class far above the others."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 10, generator=g)
    logits[torch.arange(n), torch.randint(0, 10, (n,), generator=g)] += scale
    return logits


def flat(n: int, seed: int = 1) -> torch.Tensor:
    """Non-digit-like logits after outlier exposure: small and nearly equal."""
    return 0.1 * torch.randn(n, 10, generator=torch.Generator().manual_seed(seed))


def test_scores_are_higher_for_confident_logits():
    for score in ("energy", "max_softmax"):
        s_digit, s_flat = score_logits(confident(50), score), score_logits(flat(50), score)
        assert s_digit.shape == (50,)
        assert s_digit.min() > s_flat.max(), score


def test_calibration_keeps_the_asked_share_and_rejects_separable_negatives():
    val = confident(2000)
    gate = DigitGate.calibrate(val, accept=0.995, score="energy")
    assert gate.calibrated
    assert 0.995 <= gate.val_accept <= 0.996
    assert gate.accepts(val).double().mean() == pytest.approx(gate.val_accept)
    assert not gate.accepts(flat(500)).any()
    # Fresh digits from the same distribution: close to the calibrated share.
    assert gate.accepts(confident(2000, seed=7)).double().mean() > 0.98


def test_calibration_cannot_separate_what_looks_the_same():
    # Negatives that the model finds as digit-like as digits: the gate must let them through,
    # which is what the rejection figure in summary.json then shows.
    gate = DigitGate.calibrate(confident(2000), accept=0.995)
    assert gate.accepts(confident(1000, seed=3)).double().mean() > 0.95


def test_calibration_refuses_bad_input():
    with pytest.raises(MnistlabError, match="empty validation"):
        DigitGate.calibrate(torch.empty(0, 10))
    with pytest.raises(MnistlabError, match="accept"):
        DigitGate.calibrate(confident(10), accept=1.5)
    bad = confident(10)
    bad[0, 0] = float("nan")
    with pytest.raises(MnistlabError, match="not finite"):
        DigitGate.calibrate(bad)
    with pytest.raises(MnistlabError, match="shape"):
        score_logits(torch.zeros(10), "energy")
    with pytest.raises(MnistlabError, match="unknown score"):
        DigitGate(score="entropy")


def test_from_state_without_a_gate_is_the_flagged_fallback():
    gate = DigitGate.from_state({"model": {"name": "fast"}})
    assert not gate.calibrated
    assert gate.score == "max_softmax" and gate.threshold == FALLBACK_THRESHOLD
    assert "uncalibrated" in gate.describe()
    assert DigitGate.from_state(None) == gate
    # Fallback: a flat softmax (top probability ~0.1) is rejected, a confident one accepted.
    assert gate.accepts(confident(20)).all()
    assert not gate.accepts(flat(20)).any()


def test_from_state_rejects_a_damaged_gate():
    with pytest.raises(MnistlabError, match="damaged"):
        DigitGate.from_state({"digit_gate": {"score": "energy"}, "path": "x.pt"})
    with pytest.raises(MnistlabError, match=r"x\.pt: digit_gate must be a dict"):
        DigitGate.from_state({"digit_gate": 3.0, "path": "x.pt"})


def test_checkpoint_round_trip(tmp_path):
    from mnistlab.checkpoint import load_checkpoint, save_checkpoint

    gate = DigitGate.calibrate(confident(500), accept=0.99, score="energy",
                               negatives={"version": 1, "seed": 0})
    save_checkpoint(tmp_path / "g.pt", {"digit_gate": gate.to_state()})
    back = DigitGate.from_state(load_checkpoint(tmp_path / "g.pt"))  # weights_only=True
    assert back == gate and back.calibrated
    assert back.info["negatives"] == {"version": 1, "seed": 0}
    logits = torch.cat([confident(100, seed=5), flat(100)])
    assert torch.equal(back.accepts(logits), gate.accepts(logits))
