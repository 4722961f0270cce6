"""The doctor's checks, each with cases that must fire and cases that must not.

Models are written here in several styles (nn.Sequential, subclasses, functional calls in
forward, raw parameters) and sizes, so the checks are shown to work on models they have never
seen. Data is synthetic (conftest.draw_digits), passed as batches through the library API.
"""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import draw_digits
from mnistlab.doctor import Report, examine
from mnistlab.doctor.losses import classify_loss, resolve_loss
from mnistlab.doctor.setup import check_labels, check_updates, count_overlap
from mnistlab.errors import MnistlabError

torch.set_num_threads(1)


def digits(n: int = 192, seed: int = 0, scale: str = "standard"):
    images, labels = draw_digits(n, seed)
    x = torch.from_numpy(images).float().unsqueeze(1)
    if scale == "standard":
        x = (x / 255 - 0.1307) / 0.3081
    elif scale == "unit":
        x = x / 255
    return x, torch.from_numpy(labels.astype("int64"))


BATCHES = [digits()]


def run(model: nn.Module, **kwargs) -> Report:
    kwargs.setdefault("batches", BATCHES)
    kwargs.setdefault("probe_lr", False)  # the probe has its own tests; keep the rest fast
    return examine(model, **kwargs)


def mlp(*tail: nn.Module, hidden: int = 64) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10),
                         *tail)


class Functional(nn.Module):
    """A subclass whose last step is a functional call chosen by the test."""

    def __init__(self, last, hidden: int = 48) -> None:
        super().__init__()
        self.fc1, self.fc2, self.last = nn.Linear(784, hidden), nn.Linear(hidden, 10), last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.fc2(F.relu(self.fc1(x.view(len(x), -1)))))


class SmallConv(nn.Module):
    def __init__(self, last=lambda z: z) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, stride=2)
        self.fc = nn.Linear(8 * 13 * 13, 10)
        self.last = last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.fc(torch.relu(self.conv(x)).flatten(1)))


# ---- checks 1-3: the output against the loss ------------------------------------------------
@pytest.mark.parametrize("model", [
    mlp(nn.ReLU()), mlp(nn.ReLU(), hidden=200), Functional(F.relu), Functional(torch.sigmoid),
    SmallConv(torch.relu), Functional(lambda z: z.abs())], ids=lambda m: type(m).__name__)
def test_non_negative_output_before_cross_entropy_is_an_error(model):
    report = run(model)
    finding = report.get("non-negative-output")
    assert finding is not None and finding.severity == "error"
    assert finding.evidence["min"] >= 0
    assert report.exit_code == 1


@pytest.mark.parametrize("model", [
    mlp(nn.Softmax(dim=1)), Functional(lambda z: torch.softmax(z, 1)),
    Functional(lambda z: z.softmax(-1)), SmallConv(lambda z: F.softmax(z, dim=1))],
    ids=["Sequential", "torch.softmax", "Tensor.softmax", "conv"])
def test_softmax_before_cross_entropy_is_an_error(model):
    finding = run(model).get("softmax-before-cross-entropy")
    assert finding is not None and finding.severity == "error"
    assert finding.evidence["row_sum_max_error"] < 1e-3
    assert finding.evidence["best_possible_loss"] == pytest.approx(1.4612, abs=1e-3)


@pytest.mark.parametrize("model", [
    mlp(nn.Softmax(dim=0)), Functional(lambda z: z.softmax(0)),
    Functional(lambda z: F.log_softmax(z, dim=0)), SmallConv(lambda z: torch.softmax(z, 0))],
    ids=["nn.Softmax(0)", "Tensor.softmax(0)", "log_softmax(0)", "conv"])
@pytest.mark.parametrize("loss", ["cross_entropy", "nll"])
def test_softmax_over_the_batch_is_an_error_for_every_loss(model, loss):
    report = run(model, loss_fn=loss)
    finding = report.get("softmax-over-batch")
    assert finding is not None and finding.severity == "error"
    assert finding.evidence["batch_dependence"] > 1e-3  # one image's output depends on others
    assert "softmax-before-cross-entropy" not in report.names


def test_the_call_that_produced_the_output_is_named():
    finding = run(Functional(lambda z: z.softmax(0))).get("softmax-over-batch")
    assert finding.evidence["produced_by"] == "softmax(dim=0)"


def test_log_softmax_with_nll_is_correct():
    for model in (mlp(nn.LogSoftmax(dim=1)), Functional(lambda z: F.log_softmax(z, 1))):
        report = run(model, loss_fn="nll")
        assert report.healthy, report.format()
        assert report.measurements["output"]["form"] == "log_softmax"


def test_log_softmax_with_cross_entropy_is_only_a_note():
    report = run(Functional(lambda z: z.log_softmax(1)))
    assert [(f.name, f.severity) for f in report.findings] == [
        ("log-softmax-before-cross-entropy", "note")]
    assert report.exit_code == 0


def test_logits_with_nll_is_an_error_and_probabilities_with_nll_too():
    assert run(mlp(), loss_fn="nll").get("logits-to-nll").severity == "error"
    assert run(mlp(nn.Softmax(1)), loss_fn=nn.NLLLoss()).get("probabilities-to-nll") is not None


@pytest.mark.parametrize("model", [mlp(), mlp(hidden=300), Functional(lambda z: z), SmallConv()],
                         ids=["mlp64", "mlp300", "functional", "conv"])
def test_logits_with_cross_entropy_raise_no_output_finding(model):
    report = run(model)
    assert report.healthy, report.format()
    assert report.measurements["output"]["form"] == "logits"


def test_unknown_losses_are_classified_by_behaviour():
    assert classify_loss(nn.CrossEntropyLoss(label_smoothing=0.1)) == ("cross_entropy", "index")
    assert classify_loss(lambda z, y: F.nll_loss(F.log_softmax(z, 1), y)) == (
        "cross_entropy", "index")
    assert classify_loss(nn.NLLLoss()) == ("nll", "index")
    assert classify_loss(nn.MSELoss()) == ("other", "one_hot")
    assert resolve_loss("mse").targets == "one_hot"
    # A custom NLL-style loss used with logits is caught like F.nll_loss.
    assert run(mlp(), loss_fn=lambda z, y: -z.gather(1, y[:, None]).mean()).get("logits-to-nll")


# ---- check 4: initialisation -----------------------------------------------------------------
class RawRandn(nn.Module):
    """Weights from torch.randn with no scaling, used as x @ W (fan-in is W's first dim)."""

    def __init__(self, sizes=(784, 200, 200, 10), scale: float = 1.0) -> None:
        super().__init__()
        self.w = nn.ParameterList(nn.Parameter(torch.randn(a, b) * scale)
                                  for a, b in itertools.pairwise(sizes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for i, w in enumerate(self.w):
            x = x @ w
            if i < len(self.w) - 1:
                x = F.relu(x)
        return x


def normal_init(model: nn.Module, std: float, bias: float | None = None) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            if bias is not None:
                nn.init.constant_(m.bias, bias)
    return model


def randn_everywhere(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    return model


@pytest.mark.parametrize("model", [RawRandn(), RawRandn((784, 100, 10)),
                                   normal_init(mlp(hidden=200), 1.0),
                                   randn_everywhere(SmallConv())],
                         ids=["raw-3x200", "raw-1x100", "nn.Linear-normal", "conv"])
def test_unscaled_random_weights_are_an_error_with_numbers_before_and_after(model):
    report = run(model, lr=0.01)
    finding = report.get("initial-loss-too-high")
    assert finding is not None and finding.severity == "error"
    assert finding.evidence["initial_loss"] > 10
    after = finding.evidence["after_reinit"]
    assert after["initial_loss"] < 3.5  # the recommended init brings it back near ln 10
    runs = finding.evidence["short_training"]
    assert runs["reinitialised"][1] < runs["reinitialised"][0]
    assert report.get("activations-explode") is not None


def test_a_zero_initialised_last_layer_is_fine():
    model = mlp()
    nn.init.zeros_(model[3].weight)
    nn.init.zeros_(model[3].bias)
    report = run(model)
    assert report.healthy, report.format()
    assert report.measurements["initial_loss"] == pytest.approx(2.3026, abs=1e-3)


def test_scaled_raw_weights_are_fine():
    report = run(RawRandn(scale=0.05))
    assert "initial-loss-too-high" not in report.names
    assert "activations-explode" not in report.names


def test_vanishing_activations_are_found():
    deep = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.Tanh(),
                         *[m for _ in range(3) for m in (nn.Linear(64, 64), nn.Tanh())],
                         nn.Linear(64, 10))
    finding = run(normal_init(deep, 0.003, bias=0.0)).get("activations-vanish")
    assert finding is not None
    assert finding.evidence["after_reinit"]["max_layer_out_std"] > 0.1
    assert run(deep.apply(lambda m: m.reset_parameters() if isinstance(m, nn.Linear)
                          else None)).get("activations-vanish") is None


@pytest.mark.parametrize("depth", [8, 12])
def test_vanishing_gradients_in_a_deep_sigmoid_stack(depth):
    deep = nn.Sequential(nn.Flatten(), nn.Linear(784, 48), nn.Sigmoid(),
                         *[m for _ in range(depth - 1) for m in (nn.Linear(48, 48),
                                                                  nn.Sigmoid())],
                         nn.Linear(48, 10))
    finding = run(deep).get("gradients-vanish")
    assert finding is not None
    ratios = finding.evidence["grad_to_weight_per_layer"]
    assert ratios[0] < 1e-3 * ratios[-1]
    shallow = nn.Sequential(nn.Flatten(), nn.Linear(784, 48), nn.Sigmoid(), nn.Linear(48, 10))
    assert run(shallow).get("gradients-vanish") is None


def test_saturated_tanh_is_found():
    model = normal_init(nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.Tanh(),
                                      nn.Linear(128, 10)), 0.3)
    finding = run(model).get("saturated-activations")
    assert finding is not None and finding.evidence["saturated_fraction_per_layer"][1] > 0.5


def test_dead_relus_are_found():
    model = normal_init(nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(),
                                      nn.Linear(64, 10)), 0.01, bias=-5.0)
    finding = run(model).get("dead-relu")
    assert finding is not None and finding.severity == "error"
    assert finding.evidence["dead_fraction_per_layer"][1] == 1.0


def test_healthy_model_reports_the_numbers_it_looked_at():
    report = run(SmallConv(), probe_lr=True, lr=0.05, epochs=3)
    assert report.healthy, report.format()
    m = report.measurements
    assert m["initial_loss"] == pytest.approx(2.3026, abs=0.3)
    assert [la["layer"] for la in m["layers"]] == ["conv (Conv2d)", "fc (Linear)"]
    assert all(la["grad_norm"] > 0 for la in m["layers"])
    assert m["lr_probe"]["suggested"] is not None
    text = report.format()
    for part in ("initial loss", "grad norm", "suggested lr range", "healthy"):
        assert part in text


# ---- check 5: learning rate ------------------------------------------------------------------
def test_a_diverging_learning_rate_is_an_error():
    report = run(mlp(), lr=30.0, probe_lr=True)
    finding = report.get("lr-diverges")
    assert finding is not None and finding.severity == "error"
    _, hi = finding.evidence["suggested_range"]
    assert hi < 30.0


def test_a_learning_rate_that_barely_moves_the_loss_is_a_warning():
    finding = run(mlp(), lr=1e-4, probe_lr=True).get("lr-too-small")
    assert finding is not None and finding.severity == "warning"
    assert finding.evidence["best_lr_in_probe"] > 1e-4


def test_a_good_learning_rate_raises_nothing():
    report = run(mlp(), lr=0.05, probe_lr=True)
    assert not {"lr-diverges", "lr-too-small"} & set(report.names), report.format()


def test_warmup_is_judged_at_its_starting_rate():
    # lr 3 diverges from the start, but one-cycle starting at 0.03 does not.
    assert run(mlp(), lr=3.0, probe_lr=True).get("lr-diverges") is not None
    report = run(mlp(), lr=3.0, warmup_lr=0.03, probe_lr=True)
    assert report.get("lr-diverges") is None


# ---- checks 6-8: the setup -------------------------------------------------------------------
def test_whole_data_set_batches_are_an_error_with_the_arithmetic():
    finding = run(mlp(), batch_size=60000, epochs=10, train_size=60000).get("too-few-updates")
    assert finding.severity == "error"
    assert finding.evidence["total"] == 10
    assert "10 epochs x ceil(60,000 / 60,000) = 10" in finding.title
    assert finding.evidence["with_batch_128"] == 4690


def test_update_counts():
    assert check_updates(2, 128, 60000)[1] == []
    assert check_updates(1, 1000, 60000)[1][0].severity == "error"  # 60 steps
    assert check_updates(1, 300, 60000)[1][0].severity == "warning"  # 200 steps
    assert check_updates(3, 300, 60000)[1] == []


@pytest.mark.parametrize(("scale", "severity"), [("raw", "error"), ("unit", "warning")])
def test_inputs_not_normalised(scale, severity):
    report = run(mlp(), batches=[digits(scale=scale)])
    assert report.get("inputs-not-normalized").severity == severity
    assert run(mlp()).get("inputs-not-normalized") is None


def test_unnormalised_real_data_is_flagged_through_the_normalize_option(synthetic_data):
    report = examine(mlp(), data=synthetic_data, normalize=False, probe_lr=False)
    assert report.get("inputs-not-normalized").severity == "warning"
    assert examine(mlp(), data=synthetic_data, probe_lr=False).healthy


def one_hot(y: torch.Tensor) -> torch.Tensor:
    return F.one_hot(y, 10).float()


@pytest.mark.parametrize(("labels", "loss", "name", "severity"), [
    (lambda y: one_hot(y), "cross_entropy", "labels-one-hot", "note"),
    (lambda y: one_hot(y), "nll", "labels-one-hot", "error"),
    (lambda y: F.one_hot(y, 10), "cross_entropy", "labels-one-hot", "error"),
    (lambda y: one_hot(y)[:, None, :], "cross_entropy", "labels-wrong-shape", "error"),
    (lambda y: y.float(), "cross_entropy", "labels-float", "error"),
    (lambda y: y + 1, "cross_entropy", "labels-out-of-range", "error"),
    (lambda y: y, "mse", "labels-not-one-hot", "error"),
])
def test_labels_in_the_wrong_form(labels, loss, name, severity):
    x, y = digits()
    model = mlp(nn.LogSoftmax(1)) if loss == "nll" else mlp()
    finding = run(model, loss_fn=loss, batches=[(x, labels(y))]).get(name)
    assert finding is not None and finding.severity == severity
    assert "loss_call" in finding.evidence


def test_labels_in_the_right_form_raise_nothing():
    y = digits()[1]
    assert check_labels(y, resolve_loss("cross_entropy"), 10) == []
    assert check_labels(one_hot(y), resolve_loss("mse"), 10) == []


def test_class_ordered_data_without_shuffling():
    ordered = torch.arange(10).repeat_interleave(600)
    finding = run(mlp(), train_labels=ordered, shuffle=False).get("ordered-by-class")
    assert finding.severity == "error" and finding.evidence["classes_in_first_batch"] == 1
    assert run(mlp(), train_labels=ordered, shuffle=True).findings == []
    mixed = digits(6000)[1]
    assert run(mlp(), train_labels=mixed, shuffle=False).get("shuffle-off").severity == "note"


def test_test_split_used_for_training_or_selection():
    assert run(mlp(), trains_on_test=True).get("trains-on-test").severity == "error"
    assert run(mlp(), selects_on_test=True).get("selects-on-test").severity == "error"
    train, test = digits(100)[0], digits(50, seed=1)[0]
    assert count_overlap(train, test) == 0
    leaky = torch.cat([train, test[:7]])
    report = run(mlp(), train_images=leaky, test_images=test)
    assert report.get("trains-on-test").evidence["test_images_in_training"] == 7
    assert run(mlp(), train_images=train, test_images=test).healthy


# ---- check 9: evaluation in training mode ----------------------------------------------------
class FunctionalDropout(Functional):
    def __init__(self) -> None:
        super().__init__(lambda z: z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.dropout(F.relu(self.fc1(x.flatten(1))), 0.3, self.training)
        return self.fc2(h)


def forgetful_eval(model, x):
    with torch.no_grad():
        return model(x)


def careful_eval(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("model", [
    nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 10)),
    nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                  nn.Linear(4 * 26 * 26, 10)),
    FunctionalDropout()],
    ids=["dropout", "batchnorm", "functional-dropout"])
def test_evaluation_in_training_mode_is_an_error(model):
    finding = run(model, eval_fn=forgetful_eval).get("evaluated-in-training-mode")
    assert finding is not None and finding.severity == "error"
    assert finding.evidence["max_difference_to_eval_mode"] > 0
    assert 0 <= finding.evidence["accuracy_as_evaluated"] <= 1
    assert 0 <= finding.evidence["accuracy_in_eval_mode"] <= 1
    assert run(model, eval_fn=careful_eval).get("evaluated-in-training-mode") is None


def test_an_eval_function_that_fails_is_one_line():
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Dropout(0.5),
                          nn.Linear(64, 10))

    def broken(net, x):
        raise ValueError("my eval broke")

    with pytest.raises(MnistlabError, match=r"evaluation function failed.*my eval broke"):
        run(model, eval_fn=broken)


def test_training_mode_is_harmless_without_dropout_or_batchnorm():
    assert run(mlp(), eval_fn=forgetful_eval).healthy


def test_a_trained_model_with_dropout_gets_a_note():
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Dropout(0.5),
                          nn.Linear(64, 10))
    report = run(model, trained=True)
    assert report.names == ["mode-dependent-layers"]
    assert "initial_loss" not in report.measurements  # from-scratch checks are skipped


# ---- the report ------------------------------------------------------------------------------
def test_report_is_sorted_json_ready_and_leaves_the_model_alone():
    model = mlp(nn.Softmax(0))
    model.train(False)
    before = [p.detach().clone() for p in model.parameters()]
    report = run(model, batches=[digits(scale="unit")], batch_size=60000, epochs=1,
                 train_size=60000, probe_lr=True)
    severities = [f.severity for f in report.findings]
    assert severities == sorted(severities, key=["error", "warning", "note"].index)
    assert {"softmax-over-batch", "too-few-updates", "inputs-not-normalized"} <= set(report.names)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["exit_code"] == 1 and data["counts"]["error"] >= 2
    assert all({"name", "severity", "evidence", "explanation", "fix"} <= set(f)
               for f in data["findings"])
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert model.training is False


def test_a_model_that_cannot_run_or_has_the_wrong_output():
    class Broken(nn.Module):
        def forward(self, x):
            raise ValueError("boom")

    report = run(Broken())
    assert report.names == ["forward-fails"] and "boom" in report.findings[0].evidence["tried"]
    report = run(nn.Sequential(nn.Flatten(), nn.Linear(784, 7)))
    assert report.names == ["output-shape"]


def test_a_flat_input_model_is_fed_flat_images():
    report = run(nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10)))
    assert report.healthy and "(784,)" in report.measurements["data"]


def test_a_handful_of_user_images_is_enough_and_nan_stays_json_safe():
    x, y = digits(40)
    report = run(mlp(), batches=[(x, y)], lr=1e3, probe_lr=True)
    assert report.get("lr-diverges") is not None
    points = report.measurements["lr_probe"]["points"]
    assert any(p["diverged"] for p in points)
    json.dumps(report.to_dict(), allow_nan=False)  # NaN losses are written as strings


def test_an_eval_function_that_returns_an_accuracy_is_checked_too():
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Dropout(0.5),
                          nn.Linear(64, 10))
    y = digits()[1][:64]

    def accuracy(net, x):  # forgets net.eval(): dropout makes it vary between calls
        return float((net(x).argmax(1) == y).float().mean())

    finding = run(model, eval_fn=accuracy).get("evaluated-in-training-mode")
    assert finding is not None and finding.evidence["kinds"] == ["Dropout"]


# ---- an activation hidden under the final softmax / log_softmax ------------------------------
class HiddenUnderLogSoftmax(nn.Module):
    """A subclass with functional calls: `act` on the logits, then log_softmax."""

    def __init__(self, act) -> None:
        super().__init__()
        self.fc1, self.fc2, self.act = nn.Linear(784, 64), nn.Linear(64, 10), act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(x.flatten(1)))
        return F.log_softmax(self.act(self.fc2(x)), dim=1)


def sequential_factory(*middle: nn.Module, last: nn.Module | None = None) -> nn.Sequential:
    """A factory function building a Sequential, as tutorials write them."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10),
                         *middle, last if last is not None else nn.LogSoftmax(dim=1))


NON_NEGATIVE_UNDER_SOFTMAX = {
    "class-relu": (lambda: HiddenUnderLogSoftmax(F.relu), "relu"),
    "class-clamp": (lambda: HiddenUnderLogSoftmax(lambda z: z.clamp(min=0)), "clamp"),
    "class-abs": (lambda: HiddenUnderLogSoftmax(torch.abs), "abs"),
    "class-softplus": (lambda: HiddenUnderLogSoftmax(F.softplus), "softplus"),
    "sequential-relu": (lambda: mlp(nn.ReLU(), nn.LogSoftmax(dim=1)), "relu"),
    "sequential-relu-inplace": (lambda: mlp(nn.ReLU(inplace=True), nn.LogSoftmax(1)), "relu"),
    "factory-softplus": (lambda: sequential_factory(nn.Softplus()), "softplus"),
    "factory-relu-softmax-log": (
        lambda: Functional(lambda z: torch.log(torch.softmax(torch.relu(z), 1))), "relu"),
    "conv-relu": (lambda: SmallConv(lambda z: F.log_softmax(F.relu(z), 1)), "relu"),
}


@pytest.mark.parametrize("case", list(NON_NEGATIVE_UNDER_SOFTMAX))
@pytest.mark.parametrize("loss", ["nll", nn.NLLLoss(), "cross_entropy"],
                         ids=["nll", "NLLLoss", "cross_entropy"])
def test_a_non_negative_activation_under_the_final_log_softmax_is_an_error(case, loss):
    build, producer = NON_NEGATIVE_UNDER_SOFTMAX[case]
    report = run(build(), loss_fn=loss)
    finding = report.get("non-negative-before-softmax")
    assert finding is not None and finding.severity == "error", report.format()
    ev = finding.evidence
    assert ev["input_min"] >= 0 and ev["fed_by"] == producer
    assert ev["normalised_by"] in ("log_softmax(dim=1)", "softmax(dim=1)")
    if producer in ("relu", "clamp"):
        assert 0 < ev["clamped_fraction"] < 1  # the logits that get no gradient
    assert "F.log_softmax(self.fc_out(x), dim=1)" in finding.fix
    assert (f"not F.log_softmax(F.{producer}(" in finding.fix
            or f"not F.log_softmax(torch.{producer}(" in finding.fix)
    assert report.exit_code == 1


@pytest.mark.parametrize(("build", "bounds"), [
    (lambda: HiddenUnderLogSoftmax(torch.sigmoid), [0.0, 1.0]),
    (lambda: sequential_factory(nn.Tanh()), [-1.0, 1.0]),
    (lambda: sequential_factory(nn.Hardtanh(-2.0, 2.0)), [-2.0, 2.0]),
    (lambda: mlp(nn.Sigmoid(), nn.Softmax(dim=1)), [0.0, 1.0]),
], ids=["class-sigmoid", "factory-tanh", "factory-hardtanh", "sequential-sigmoid-softmax"])
def test_a_bounded_activation_under_the_final_softmax_is_an_error(build, bounds):
    report = run(build(), loss_fn="nll")
    finding = report.get("squashed-before-softmax")
    assert finding is not None and finding.severity == "error", report.format()
    ev = finding.evidence
    assert ev["bounds"] == bounds
    width = bounds[1] - bounds[0]
    top = math.exp(width) / (math.exp(width) + 9)
    assert ev["highest_possible_probability"] == pytest.approx(top)
    assert ev["best_possible_loss"] == pytest.approx(-math.log(top))


@pytest.mark.parametrize("model", [
    mlp(nn.LogSoftmax(dim=1)), sequential_factory(), HiddenUnderLogSoftmax(lambda z: z),
    HiddenUnderLogSoftmax(F.leaky_relu), HiddenUnderLogSoftmax(F.elu),
    SmallConv(lambda z: F.log_softmax(z, 1))],
    ids=["sequential", "factory", "class", "leaky-relu", "elu", "conv"])
def test_log_softmax_of_signed_logits_raises_nothing(model):
    report = run(model, loss_fn="nll")
    assert report.healthy, report.format()
    assert report.measurements["output"]["normalised_by"] == "log_softmax(dim=1)"


def test_a_zero_initialised_last_layer_under_log_softmax_is_not_judged():
    model = sequential_factory(nn.ReLU())
    nn.init.zeros_(model[3].weight)
    nn.init.zeros_(model[3].bias)
    assert run(model, loss_fn="nll").get("non-negative-before-softmax") is None


def test_a_relu_on_the_output_without_softmax_keeps_its_own_finding():
    report = run(mlp(nn.ReLU()))
    assert "non-negative-output" in report.names
    assert "non-negative-before-softmax" not in report.names


# ---- randomness in eval mode ---------------------------------------------------------------
class DropoutIgnoresEval(nn.Module):
    """`F.dropout(x, p)`: training defaults to True, whatever model.eval() says."""

    def __init__(self, call=lambda h: F.dropout(h, 0.5)) -> None:
        super().__init__()
        self.fc1, self.fc2, self.call = nn.Linear(784, 64), nn.Linear(64, 10), call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.call(F.relu(self.fc1(x.flatten(1)))))


class FunctionalDropoutLayer(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, 0.3)


def dropout_factory() -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), FunctionalDropoutLayer(),
                         nn.Linear(64, 10))


class ConvDropout2d(SmallConv):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.dropout2d(torch.relu(self.conv(x)), 0.25).flatten(1))


@pytest.mark.parametrize(("model", "where"), [
    (DropoutIgnoresEval(), "dropout(p=0.5, training=True) in DropoutIgnoresEval"),
    (DropoutIgnoresEval(lambda h: torch.dropout(h, 0.5, True)),
     "dropout(p=0.5, training=True) in DropoutIgnoresEval"),
    (dropout_factory(), "dropout(p=0.3, training=True) in 3 (FunctionalDropoutLayer)"),
    (ConvDropout2d(), "dropout2d(p=0.25, training=True) in ConvDropout2d"),
], ids=["class", "torch.dropout", "factory-sequential", "conv-dropout2d"])
@pytest.mark.parametrize("loss", ["cross_entropy", "nll"])
def test_dropout_that_ignores_eval_mode_is_named_not_called_softmax_over_batch(model, where,
                                                                                  loss):
    if loss == "nll":
        model = nn.Sequential(model, nn.LogSoftmax(dim=1))
    report = run(model, loss_fn=loss)
    finding = report.get("dropout-ignores-eval")
    assert finding is not None and finding.severity == "error", report.format()
    assert "softmax-over-batch" not in report.names
    ev = finding.evidence
    assert ev["change_between_two_eval_passes"] > 1e-2
    assert ev["change_with_it_switched_off"] == 0  # dropout was all the randomness
    call, module = where.split(" in ")
    assert any(call in text and module in text for text in ev["random_calls_in_eval_mode"])
    assert 0 < ev["predictions_changed"] <= 1
    assert "training=self.training" in finding.fix


@pytest.mark.parametrize("model", [
    DropoutIgnoresEval(lambda h: h),
    FunctionalDropout(),  # F.dropout(h, 0.3, self.training)
    nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Dropout(0.5),
                  nn.Linear(64, 10)),
    nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.AlphaDropout(0.2),
                  nn.Linear(64, 10))],
    ids=["none", "functional-with-training-flag", "nn.Dropout", "nn.AlphaDropout"])
def test_dropout_that_follows_eval_mode_raises_nothing(model):
    report = run(model)
    assert report.healthy, report.format()


def test_noise_in_eval_mode_is_a_warning_and_batch_dependence_is_not_guessed():
    class Noisy(Functional):
        def __init__(self) -> None:
            super().__init__(lambda z: z)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x + 0.5 * torch.randn_like(x))

    report = run(Noisy())
    finding = report.get("random-in-eval-mode")
    assert finding is not None and finding.severity == "warning", report.format()
    assert finding.evidence["random_calls_in_eval_mode"] == ["randn_like in Noisy"]
    assert "softmax-over-batch" not in report.names


def test_softmax_over_the_batch_and_eval_dropout_are_both_named():
    model = nn.Sequential(DropoutIgnoresEval(), nn.Softmax(dim=0))
    report = run(model)
    assert {"softmax-over-batch", "dropout-ignores-eval"} <= set(report.names)
    # With the dropout switched off the batch dependence is measured, not guessed.
    assert report.get("softmax-over-batch").evidence["batch_dependence"] > 1e-3


def test_eval_dropout_does_not_look_like_a_forgotten_model_eval():
    model = DropoutIgnoresEval()
    report = run(model, eval_fn=careful_eval)
    assert "evaluated-in-training-mode" not in report.names
    assert "dropout-ignores-eval" in report.names


def test_a_trained_model_with_eval_dropout_reports_the_accuracies():
    report = run(DropoutIgnoresEval(), trained=True)
    ev = report.get("dropout-ignores-eval").evidence
    assert {"accuracy_first_pass", "accuracy_second_pass", "accuracy_dropout_off"} <= set(ev)
    assert "mode-dependent-layers" not in report.names


def test_watching_randomness_leaves_no_hooks_behind():
    from mnistlab.doctor.evalmode import eval_behaviour

    model = dropout_factory()
    eval_behaviour(model, digits(8)[0])
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert model.training  # its mode restored
