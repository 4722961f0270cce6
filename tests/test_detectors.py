"""Feature-space not-a-digit scores (benchmarks/feature_scores.py), on synthetic tensors."""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mnistlab.errors import MnistlabError
from mnistlab.models import MODELS, create_model

MODULE = Path(__file__).resolve().parents[1] / "benchmarks" / "feature_scores.py"


def load_module():
    spec = importlib.util.spec_from_file_location("feature_scores", MODULE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


scores = load_module()
KNNScore, MahalanobisScore = scores.KNNScore, scores.MahalanobisScore
detector_from_state, features_and_logits = scores.detector_from_state, scores.features_and_logits
last_linear, output_layer = scores.last_linear, scores.output_layer
penultimate_features, threshold_for = scores.penultimate_features, scores.threshold_for


def clusters(n_per_class: int, seed: int = 0, dim: int = 16, classes: int = 4,
             spread: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    """Digit-like features: tight clusters around well separated class centres."""
    g = torch.Generator().manual_seed(seed)
    centres = 5 * torch.eye(classes, dim)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    return centres[labels] + spread * torch.randn(len(labels), dim, generator=g), labels


def outliers(n: int, seed: int = 1, dim: int = 16) -> torch.Tensor:
    """Far from every cluster: in directions the classes never use."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, dim)
    x[:, 8:] = 5 * torch.randn(n, dim - 8, generator=g).abs() + 3
    return x


def round_trip(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("detector", [MahalanobisScore(), KNNScore(k=5, bank=1000)])
def test_scores_separate_a_separable_toy_case(detector):
    train_x, train_y = clusters(100)
    val_x, _ = clusters(50, seed=2)
    detector.fit(train_x, train_y)
    digits, others = detector.score(val_x), detector.score(outliers(40))
    assert digits.shape == (200,) and others.shape == (40,)
    assert digits.dtype == torch.float32
    assert digits.min() > others.max()
    threshold = threshold_for(digits, 0.99)
    assert (digits >= threshold).double().mean() >= 0.99
    assert not (others >= threshold).any()


def test_mahalanobis_uses_the_shared_covariance_not_euclidean_distance():
    # One class stretched along dimension 0: a point 3 units out along the stretch is
    # ordinary, the same distance across it is far.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 2, generator=g) * torch.tensor([3.0, 0.1])
    m = MahalanobisScore().fit(x, torch.zeros(2000, dtype=torch.int64))
    along, across = m.score(torch.tensor([[3.0, 0.0], [0.0, 3.0]]))
    assert along > -2 and across < -100


def test_mahalanobis_survives_dead_relu_dimensions():
    x, y = clusters(50)
    x[:, 3] = 0  # a feature that is always zero: a singular covariance without the ridge
    scores = MahalanobisScore().fit(x, y).score(x)
    assert torch.isfinite(scores).all()


def test_knn_keeps_a_seeded_subsample():
    x, _ = clusters(500)
    a, b = KNNScore(k=3, bank=100, seed=4).fit(x), KNNScore(k=3, bank=100, seed=4).fit(x)
    assert a.bank.shape == (100, 16)
    assert torch.equal(a.bank, b.bank)
    assert torch.allclose(a.bank.norm(dim=1), torch.ones(100))


@pytest.mark.parametrize("detector", [MahalanobisScore(), KNNScore(k=5, bank=1000)])
def test_state_round_trips_through_weights_only_load(detector):
    x, y = clusters(50)
    detector.fit(x, y)
    state = round_trip(detector.to_state())
    restored = type(detector).from_state(state)
    assert torch.equal(restored.score(x), detector.score(x))
    assert torch.equal(detector_from_state(state).score(x), detector.score(x))


def test_unfitted_wrong_shapes_and_damaged_states_are_one_line_errors():
    with pytest.raises(MnistlabError, match="fit"):
        MahalanobisScore().score(torch.zeros(3, 16))
    with pytest.raises(MnistlabError, match="fit"):
        KNNScore().to_state()
    x, y = clusters(50)
    m = MahalanobisScore().fit(x, y)
    with pytest.raises(MnistlabError, match=r"\(N, 16\)"):
        m.score(torch.zeros(3, 15))
    with pytest.raises(MnistlabError, match="labels"):
        MahalanobisScore().fit(x, y[:-1])
    state = m.to_state()
    with pytest.raises(MnistlabError, match="do not fit"):
        MahalanobisScore.from_state({**state, "whiten": torch.zeros(3, 3)})
    with pytest.raises(MnistlabError, match="no tensor 'means'"):
        MahalanobisScore.from_state({"kind": "mahalanobis", "whiten": state["whiten"]})
    with pytest.raises(MnistlabError, match="unknown kind"):
        detector_from_state({"kind": "nope"})
    with pytest.raises(MnistlabError, match="k=99"):
        KNNScore.from_state({"kind": "knn", "k": 99, "bank": torch.zeros(5, 4)})
    with pytest.raises(MnistlabError, match="k <= bank"):
        KNNScore(k=0)
    with pytest.raises(MnistlabError, match="accept"):
        threshold_for(torch.ones(5), accept=0)
    with pytest.raises(MnistlabError, match="not finite"):
        threshold_for(torch.tensor([1.0, float("nan")]))
    with pytest.raises(MnistlabError, match="non-empty"):
        threshold_for(torch.empty(0))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_penultimate_features_feed_the_output_layer_for_every_zoo_model(name):
    torch.manual_seed(0)
    model = create_model(name)
    model.train()
    x = torch.randn(5, 1, 28, 28)
    feats, logits = features_and_logits(model, x, batch_size=2)  # several batches
    layer = output_layer(model)
    assert feats.ndim == 2 and len(feats) == 5 and logits.shape == (5, 10)
    assert model.training  # the mode is restored
    model.eval()
    with torch.no_grad():  # the logits are the output layer applied to the features
        weight = layer.weight.flatten(1)
        assert torch.allclose(feats @ weight.T + layer.bias, logits, atol=1e-4)
        assert torch.allclose(model(x), logits, atol=1e-4)
    assert torch.allclose(penultimate_features(model, x), feats, atol=1e-5)  # one batch


def test_last_linear_is_the_output_layer_of_the_default_model():
    model = create_model("fast-strided")
    assert last_linear(model) is model.classifier[-1] is output_layer(model)
    with pytest.raises(MnistlabError, match=r"no nn\.Linear layer"):
        last_linear(create_model("allconv-bn"))


def test_a_model_without_an_output_layer_is_refused():
    with pytest.raises(MnistlabError, match=r"no nn\.Linear or nn\.Conv2d"):
        penultimate_features(nn.Sequential(nn.Flatten()), torch.zeros(2, 1, 28, 28))


# ---- benchmarks/detectors.py: the measuring helpers ---------------------------------------
BENCHMARK = MODULE.parent / "detectors.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("detectors_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_auroc_counts_ties_as_half():
    bench = load_benchmark()
    assert bench.auroc(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == 1.0
    assert bench.auroc(torch.tensor([0.0, 1.0]), torch.tensor([2.0, 3.0])) == 0.0
    assert bench.auroc(torch.ones(4), torch.ones(3)) == 0.5
    assert bench.auroc(torch.tensor([1.0, 3.0]), torch.tensor([2.0])) == 0.5


def test_and_rule_accepts_only_where_both_scores_would():
    bench = load_benchmark()
    val = torch.arange(1000, dtype=torch.float32)
    a = {"val": val, "x": torch.tensor([999.0, 999.0, 0.0])}
    b = {"val": -val, "x": torch.tensor([-999.0, 0.0, 0.0])}  # b's high values are a's low
    both = bench.and_rule(a, b)
    assert both["x"][1] == both["x"].max()  # high under both
    assert both["x"][0] < both["x"][1] and both["x"][2] < both["x"][1]
    assert bench.cdf(val, torch.tensor([-1.0, 499.0, 2000.0])).tolist() == [0.0, 0.5, 1.0]


def test_measure_thresholds_on_validation_and_splits_by_family():
    bench = load_benchmark()
    kinds = bench.negatives.KINDS
    family = np.array([kinds[0]] * 4 + [kinds[1]] * 4)
    scores = {"val": torch.linspace(1, 2, 1000),
              "non-digit": torch.tensor([0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 0.0]),
              "printed": torch.tensor([1.5, 0.5]), "handwritten": torch.tensor([1.5, 1.5])}
    m = bench.measure(scores, family)
    assert m["val_accept"] >= 0.995
    assert m["by_family"] == {kinds[0]: 0.75, kinds[1]: 1.0}
    assert m["reject_generated"] == 7 / 8
    assert m["accept_printed"] == 0.5 and m["accept_handwritten"] == 1.0
    assert m["families_below_80"] == [kinds[0]]
    assert np.isnan(m["reject_photo"])  # no photo-like non-digits here: no figure


def test_replace_last_linear_changes_the_number_of_outputs():
    bench = load_benchmark()
    model = create_model("fast-strided")
    bench.replace_last_linear(model, 11)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 11)
    assert last_linear(model).out_features == 11
