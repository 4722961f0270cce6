"""The not-a-digit gate (mnistlab.notadigit.gate): calibration, fallback, checkpoint round trip."""

from __future__ import annotations

import io
import json

import pytest
import torch

from mnistlab.errors import MnistlabError
from mnistlab.notadigit import exposure as outliers
from mnistlab.notadigit.gate import FALLBACK_THRESHOLD, DigitGate, score_logits
from mnistlab.notadigit.negatives import KINDS
from mnistlab.train import resolve_config, train


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


# ---- training with outlier exposure (mnistlab.notadigit.exposure) ------------------------------


def oe_config(tmp_path, name: str, **overrides):
    options = {"model": "mlp", "model_args": {"hidden": "64"}, "epochs": 2, "batch_size": 32,
               "val_size": 100, "runs_dir": str(tmp_path / "runs"), "name": name,
               "bf16": "off", "outlier_exposure": "on", **overrides}
    return resolve_config(**options)


@pytest.fixture
def small_banks(monkeypatch):
    """Small negative banks: the tests check the plumbing, not the rejection rate."""
    monkeypatch.setattr(outliers, "BANK_SIZE", 256)
    monkeypatch.setattr(outliers, "HOLDOUT_SIZE", 128)
    monkeypatch.setattr(outliers, "PRINTED_SIZE", 128)


def test_the_default_recipe_turns_it_on_for_mnist_only():
    assert resolve_config().outlier_exposure == "auto"
    assert outliers.enabled(resolve_config())
    assert not outliers.enabled(resolve_config(dataset="fashion-mnist"))
    assert not outliers.enabled(resolve_config(val_size=0))  # nothing to calibrate on
    assert not outliers.enabled(resolve_config(outlier_exposure="off"))
    assert not outliers.enabled(resolve_config(recipe="best"))  # other recipes: off
    assert outliers.enabled(resolve_config(dataset="kmnist", outlier_exposure="on"))


def test_the_numpy_backend_refuses_it():
    assert resolve_config(backend="numpy").outlier_exposure == "off"  # its own recipe
    with pytest.raises(MnistlabError, match="--outlier-exposure on: not supported by the numpy"):
        resolve_config(backend="numpy", outlier_exposure="on")
    with pytest.raises(MnistlabError, match="--outlier-exposure must be auto, on or off"):
        resolve_config(outlier_exposure="yes")


def test_on_without_a_validation_split_is_refused(tmp_path, synthetic_data, small_banks):
    with pytest.raises(MnistlabError, match="--val-size"):
        train(oe_config(tmp_path, "noval", val_size=0), data=synthetic_data,
              stream=io.StringIO())


def test_uniform_loss_is_zero_only_for_equal_logits():
    assert float(outliers.uniform_loss(torch.full((4, 10), 3.0))) == pytest.approx(0, abs=1e-6)
    assert float(outliers.uniform_loss(confident(4))) > 1.0


def test_a_run_stores_a_calibrated_gate(tmp_path, synthetic_data, small_banks):
    from mnistlab.checkpoint import load_model

    stream = io.StringIO()
    result = train(oe_config(tmp_path, "gate"), data=synthetic_data, stream=stream)
    assert "not a digit:" in stream.getvalue()
    figures = result.summary["digit_gate"]
    on_disk = json.loads((result.run_dir / "summary.json").read_text())
    assert on_disk["digit_gate"]["threshold"] == figures["threshold"]
    assert 0 <= figures["holdout_reject"] <= 1 and 0 <= figures["test_accept"] <= 1
    assert set(figures["holdout_reject_by_kind"]) <= set(KINDS)
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["outlier_exposure"] == "on"
    assert config["not_a_digit"]["per_step"] == 32 // outliers.PER_DIGITS
    assert config["not_a_digit"]["size"] == 256

    model, normalizer, state = load_model(result.run_dir)  # best.pt, weights_only
    gate = DigitGate.from_state(state)
    assert gate.calibrated and gate.threshold == pytest.approx(figures["threshold"])
    assert gate.val_accept >= 0.99
    # The stored threshold reproduces the validation acceptance it was calibrated for.
    x = normalizer(synthetic_data.test_images[:200])
    with torch.no_grad():
        accepted = gate.accepts(model(x)).double().mean()
    assert accepted > 0.9  # synthetic digits of the same kind as its training digits


def test_a_run_without_it_has_the_flagged_fallback(tmp_path, synthetic_data):
    from mnistlab.checkpoint import load_model

    result = train(oe_config(tmp_path, "plain", outlier_exposure="off"), data=synthetic_data,
                   stream=io.StringIO())
    assert "digit_gate" not in result.summary
    _, _, state = load_model(result.run_dir)
    assert "digit_gate" not in state
    assert not DigitGate.from_state(state).calibrated


def test_negatives_per_step_depend_on_seed_epoch_batch_and_rank(tmp_path, synthetic_data,
                                                                small_banks):
    from mnistlab.train.loop import Trainer

    trainer = Trainer(oe_config(tmp_path, "draws"), synthetic_data, stream=io.StringIO())
    oe = trainer.outliers
    x = torch.zeros(32, 1, 28, 28)
    a = oe.extend(x, 0, 3)
    assert a.shape == (32 + 4 + 2, 1, 28, 28) and torch.equal(a[:32], x)  # 32/8 + 32/16
    assert torch.equal(a, oe.extend(x, 0, 3))  # the same step: the same negatives
    assert not torch.equal(a, oe.extend(x, 0, 4))
    assert not torch.equal(a, oe.extend(x, 1, 3))
    oe.rank = 1
    oe._epoch = None
    assert not torch.equal(a, oe.extend(x, 0, 3))  # each DDP rank its own negatives
    # Normalised like the digits: the black background maps to the normaliser's shift.
    background = float(trainer.normalizer(torch.zeros(1, 28, 28, dtype=torch.uint8)).min())
    assert float(a[32:].amin()) == pytest.approx(background, abs=1e-5)


def test_dry_run_and_resume_recompute_the_gate(tmp_path, synthetic_data, small_banks):
    from mnistlab.checkpoint import load_checkpoint

    dry = train(oe_config(tmp_path, "dry", dry_run=True), data=synthetic_data,
                stream=io.StringIO())
    assert "digit_gate" in load_checkpoint(dry.run_dir / "best.pt")

    cfg = oe_config(tmp_path, "paused")
    train(cfg, data=synthetic_data, stream=io.StringIO(), max_epochs=1)
    assert "digit_gate" not in load_checkpoint(tmp_path / "runs" / "paused" / "last.pt")
    resumed = train(cfg, data=synthetic_data, resume=tmp_path / "runs" / "paused",
                    stream=io.StringIO())
    straight = train(oe_config(tmp_path, "straight"), data=synthetic_data,
                     stream=io.StringIO())
    gate_resumed = load_checkpoint(resumed.run_dir / "best.pt")["digit_gate"]
    gate_straight = load_checkpoint(straight.run_dir / "best.pt")["digit_gate"]
    assert gate_resumed["threshold"] == pytest.approx(gate_straight["threshold"], rel=1e-5)


@pytest.mark.slow
@pytest.mark.real_data
def test_the_default_run_says_not_a_digit(real_default_run, real_mnist):
    """The default run (outlier exposure on) keeps MNIST's test digits and rejects generated
    non-digits it never saw: another seed, other fonts and strokes."""
    from mnistlab.checkpoint import load_model
    from mnistlab.notadigit.negatives import generate

    summary = json.loads((real_default_run / "summary.json").read_text())
    figures = summary["digit_gate"]
    assert figures["val_accept"] >= 0.99 and figures["test_accept"] >= 0.99
    assert figures["holdout_reject"] >= 0.80
    model, normalizer, state = load_model(real_default_run)
    gate = DigitGate.from_state(state)
    assert gate.calibrated and gate.threshold == pytest.approx(figures["threshold"])
    images, _ = generate(500, seed=12345, variant="holdout")
    with torch.no_grad():
        rejected = ~gate.accepts(model(normalizer(torch.from_numpy(images))))
        accepted = gate.accepts(model(normalizer(real_mnist.test_images[:2000])))
    assert rejected.double().mean() >= 0.80
    assert accepted.double().mean() >= 0.99


def test_printed_digits_ride_along_with_their_labels(tmp_path, synthetic_data, small_banks):
    from mnistlab.train.loop import Trainer

    trainer = Trainer(oe_config(tmp_path, "printed"), synthetic_data, stream=io.StringIO())
    oe = trainer.outliers
    x = torch.zeros(32, 1, 28, 28)
    out = oe.extend(x, 0, 5)
    assert oe.per_step == 4 and oe.printed_per_step == 2 and out.shape[0] == 38
    labels = oe._step_labels.clone()
    assert labels.shape == (2,) and ((labels >= 0) & (labels <= 9)).all()
    assert torch.equal(out, oe.extend(x, 0, 5)) and torch.equal(labels, oe._step_labels)
    # The printed digits' images are the bank's, for the labels recorded.
    printed = out[36:]
    matches = [(oe.printed == p).flatten(1).all(1).nonzero().flatten() for p in printed]
    assert all(len(m) and int(oe.printed_labels[m[0]]) == int(lb)
               for m, lb in zip(matches, labels, strict=True))
    # Their loss is a cross-entropy on those labels: right logits cost less than wrong ones.
    right = torch.zeros(38, 10)
    right[36:] = torch.nn.functional.one_hot(labels, 10).float() * 10
    wrong = torch.zeros(38, 10)
    wrong[36:] = torch.nn.functional.one_hot((labels + 1) % 10, 10).float() * 10
    digits, loss_right = oe.split_loss(right, 32)
    _, loss_wrong = oe.split_loss(wrong, 32)
    assert digits.shape == (32, 10) and float(loss_right) < float(loss_wrong)
    assert oe.info["printed"]["digits"] == "0123456789"


def test_negatives_exclude_is_checked():
    with pytest.raises(MnistlabError, match="--negatives-exclude unknown family spiral"):
        resolve_config(negatives_exclude="letter,spiral")
    with pytest.raises(MnistlabError, match="leaves no negative family"):
        resolve_config(negatives_exclude=",".join(KINDS))
    with pytest.raises(MnistlabError, match="applies only with outlier exposure"):
        resolve_config(negatives_exclude="letter", outlier_exposure="off")
    with pytest.raises(MnistlabError, match="applies only with outlier exposure"):
        resolve_config(negatives_exclude="letter", dataset="fashion-mnist")
    assert resolve_config(negatives_exclude="letter,shape").negatives_exclude == "letter,shape"


def test_an_excluded_family_is_left_out_of_the_bank(tmp_path, synthetic_data, small_banks):
    from mnistlab.notadigit import negatives
    from mnistlab.train.loop import Trainer

    trainer = Trainer(oe_config(tmp_path, "lofo", negatives_exclude="letter"), synthetic_data,
                      stream=io.StringIO())
    images, kinds = negatives.load_bank(256, outliers.BANK_SEED, "train")
    kept = images[kinds != KINDS.index("letter")]
    oe = trainer.outliers
    assert oe.info["exclude"] == ["letter"] and oe.info["bank_used"] == len(kept) < 256
    assert torch.equal(oe.bank, oe.normalizer(torch.from_numpy(kept.copy())))
