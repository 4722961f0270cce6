"""The speed work: recipes, the fast model, the decoded-data cache, and the training step.

No timings here (they live in benchmarks/); these tests check that what was made fast is
still right.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mnistlab.data import dataset
from mnistlab.data.idx import write_idx
from mnistlab.data.locate import LocatedFile, md5_of
from mnistlab.models import create_model, describe
from mnistlab.train import Trainer, resolve_config, train
from mnistlab.train.config import RECIPES


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_every_recipe_resolves_and_builds_its_model(recipe):
    config = resolve_config(recipe)
    model = create_model(config.model, **config.model_args)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_default_and_best_recipes():
    default, best = resolve_config(), resolve_config("best")
    assert (default.model, default.epochs, default.batch_size, default.lr,
            default.label_smoothing, default.schedule) == (
        "fast-strided", 1, 128, 0.3, 0.2, "onecycle")
    assert best.model_args == {"width": 56} and best.augment and best.epochs > default.epochs
    # best ends with a fit on all the training images (no validation split), taking the
    # steps of its development form (5,000 held out, 24 epochs) on which it was chosen
    assert best.val_size == 0 and default.val_size == 5000
    assert best.epochs * math.ceil(60000 / best.batch_size) == pytest.approx(
        24 * math.ceil(55000 / best.batch_size), rel=0.001)
    # An explicit option beats the recipe; another model drops what the recipe tuned for its
    # own model (arguments, epochs, batch, rate, smoothing) and gets TrainConfig's defaults.
    assert resolve_config("best", epochs=3).epochs == 3
    assert resolve_config("best", model="lenet5").model_args == {}
    assert resolve_config("best", model="lenet5").val_size == 5000  # validation comes back
    assert resolve_config("best", val_size=5000, epochs=24).val_size == 5000
    other = resolve_config(model="lenet5")
    assert (other.epochs, other.batch_size, other.lr, other.label_smoothing) == (2, 128, 0.1, 0.0)
    kept = resolve_config(model="fast-strided", lr=0.4)  # same model: the recipe's values kept
    assert (kept.epochs, kept.label_smoothing, kept.lr) == (1, 0.2, 0.4)


def test_the_refit_benchmark_compares_data_not_training_length():
    # benchmarks/refit.py judges the best recipe's final fit on validation: its runs on
    # 50,000 and 55,000 images must both leave out each seed's 5,000 validation images
    # (one permutation per seed), and take about the final fit's number of steps.
    from benchmarks import refit

    from mnistlab.data.split import split_indices

    best = resolve_config("best")
    final_steps = best.epochs * math.ceil(60000 / best.batch_size)
    for options in refit.VARIANTS.values():
        held_out, epochs = int(options[1]), int(options[3])
        assert options[0::2] == ["--val-size", "--epochs"]
        steps = epochs * math.ceil((60000 - held_out) / best.batch_size)
        assert steps == pytest.approx(final_steps, rel=0.02)
        for seed in (0, 1, 7):
            train_idx, _ = split_indices(60000, held_out, seed)
            _, scored = split_indices(60000, refit.VALIDATION, seed)
            assert not set(scored) & set(train_idx)


def test_the_strided_net_shapes_and_cost():
    layers = describe(create_model("fast-strided"))
    convs = [tuple(la.output_shape) for la in layers if la.kind == "Conv2d"]
    assert convs == [(16, 14, 14), (32, 7, 7), (64, 4, 4)]  # every conv strides; no pooling
    assert not any(la.kind == "MaxPool2d" for la in layers)
    macs = sum(la.macs for la in layers)
    fast = sum(la.macs for la in describe(create_model("fast")))
    # 5x5 stem 196*16*25 + 49*32*16*9 + 16*64*32*9 + fc 1024*128 + 128*10, by hand:
    assert macs == 78_400 + 225_792 + 294_912 + 131_072 + 1_280 == 731_456
    assert macs < 0.55 * fast
    x = torch.randn(4, 1, 28, 28)
    assert create_model("fast-strided", width=8)(x).shape == (4, 10)


def test_fast_model_shapes_and_width():
    layers = describe(create_model("fast"))
    convs = [layer for layer in layers if layer.kind == "Conv2d"]
    assert [tuple(c.output_shape) for c in convs] == [(16, 14, 14), (32, 14, 14),
                                                           (32, 7, 7)]
    small = sum(p.numel() for p in create_model("fast").parameters())
    wide = sum(p.numel() for p in create_model("fast", width=32).parameters())
    assert 10_000 < small < 20_000 and 3.5 < wide / small < 4.1  # conv params scale as width^2


def test_channels_last_and_bf16_predict_what_the_plain_model_predicts():
    """Issue 12: the old check (allclose, atol 0.15) passed an all-zero model, since an
    untrained net's logits are all within 0.15. Here the logits spread over several units,
    channels-last must match fp32 to rounding, and bf16 must agree on every prediction
    whose margin is above bf16's error, within 3% of the logits' range."""
    torch.manual_seed(0)
    model = create_model("fast").eval()
    with torch.no_grad():
        model.classifier[-1].weight.normal_(0, 1.0)  # logits of a few units, like a trained net
    x = torch.randn(64, 1, 28, 28)
    with torch.no_grad():
        reference = model(x)
        spread = float(reference.max() - reference.min())
        assert spread > 3 and reference.argmax(1).unique().numel() >= 3  # not a constant model
        fast = model.to(memory_format=torch.channels_last)
        layout = fast(x.contiguous(memory_format=torch.channels_last))
        with torch.autocast("cpu", torch.bfloat16):
            low = fast(x.contiguous(memory_format=torch.channels_last)).float()
    assert torch.allclose(layout, reference, rtol=1e-4, atol=1e-4 * spread)
    assert (low - reference).abs().max() <= 0.03 * spread
    top2 = reference.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 0.06 * spread  # margins bf16 cannot flip
    assert clear.sum() >= 32
    assert torch.equal(low.argmax(1)[clear], reference.argmax(1)[clear])
    # ...and the check can fail: a model that predicts nothing is far from the reference.
    assert (torch.zeros_like(reference) - reference).abs().max() > 0.03 * spread


# ---- the decoded-array cache -----------------------------------------------------------

def located(path) -> LocatedFile:
    return LocatedFile(path, md5_of(path.read_bytes()), "test")


def test_decoded_cache_is_used_and_invalidated_when_the_file_changes(tmp_path, monkeypatch):
    path = tmp_path / "images.gz"
    first = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    write_idx(path, first)
    np.testing.assert_array_equal(dataset.decode_cached(located(path)), first)
    assert dataset._decoded_cache_path(located(path).md5).is_file()

    # A second load comes from the cache: the IDX reader is not called.
    def no_read(_path):
        raise AssertionError("decoded again although cached")

    monkeypatch.setattr(dataset, "read_idx", no_read)
    np.testing.assert_array_equal(dataset.decode_cached(located(path)), first)
    monkeypatch.undo()

    # The file changes: its MD5 changes, so the stale cache entry is not used.
    second = first[::-1].copy()
    write_idx(path, second)
    np.testing.assert_array_equal(dataset.decode_cached(located(path)), second)


def test_corrupt_cache_entry_falls_back_to_the_file(tmp_path):
    path = tmp_path / "labels.gz"
    labels = np.arange(10, dtype=np.uint8)
    write_idx(path, labels)
    cached = dataset._decoded_cache_path(located(path).md5)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(b"\x93NUMPY truncated")
    np.testing.assert_array_equal(dataset.decode_cached(located(path)), labels)
    np.testing.assert_array_equal(np.load(cached), labels)  # and the entry was rewritten


def test_cache_not_written_when_disabled(tmp_path):
    path = tmp_path / "labels"
    write_idx(path, np.arange(5, dtype=np.uint8))
    dataset.decode_cached(located(path), use_cache=False)
    assert not dataset._decoded_cache_path(located(path).md5).exists()


# ---- the training step -------------------------------------------------------------------

def config(tmp_path, name, **kw):
    return resolve_config(model="fast", model_args={"width": 4}, epochs=2, batch_size=50,
                          val_size=100, runs_dir=str(tmp_path), name=name, threads=1, **kw)


def test_step_statistics_stay_on_the_device_and_checkpoint_as_cpu_float64(tmp_path,
                                                                           synthetic_data):
    trainer = Trainer(config(tmp_path, "stats", bf16="off"), data=synthetic_data)
    batches = trainer.train_batches.epoch(0)
    seen = 0
    for _ in range(3):
        x, y = next(batches)
        trainer.train_step(x, y)
        seen += len(y)
    assert trainer.epoch_stats.device == trainer.device
    assert trainer.epoch_stats[2].item() == seen
    assert 0 <= trainer.epoch_stats[1].item() <= seen and trainer.epoch_stats[0].item() > 0
    saved = trainer.state()["epoch_stats"]
    assert saved.device.type == "cpu" and saved.dtype == torch.float64


@pytest.mark.parametrize("bf16, channels_last", [("on", True), ("off", False)])
def test_resume_is_exact_with_bf16_and_channels_last(tmp_path, synthetic_data, bf16,
                                                     channels_last):
    opts = {"bf16": bf16, "channels_last": channels_last, "deterministic": True}
    whole = train(config(tmp_path, "whole", **opts), data=synthetic_data)
    train(config(tmp_path, "split", **opts), data=synthetic_data, max_epochs=1)
    resumed = train(config(tmp_path, "split", **opts), data=synthetic_data,
                    resume=tmp_path / "split")
    assert resumed.summary["steps"] == whole.summary["steps"]
    assert resumed.summary["bf16"] is (bf16 == "on")
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    assert resumed.summary["test_accuracy"] == whole.summary["test_accuracy"]


# ---- the benchmark's replica of the official example -----------------------------------------

def test_example_replica_transforms_match_torchvision_and_the_batcher():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import example_replica as example

    from mnistlab.data.pipeline import Batcher, Normalizer, Split

    images = torch.randint(0, 256, (6, 28, 28), dtype=torch.uint8)
    labels = torch.arange(6)
    x, target = example.PILDigits(images, labels)[3]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and target == 3
    # ToTensor then Normalize((0.1307,), (0.3081,)), as the example composes them.
    assert torch.allclose(x, (images[3].float() / 255 - 0.1307) / 0.3081, atol=1e-6)
    # mnistlab's batcher, with the example's constants, feeds the network the same numbers.
    batch, _ = next(Batcher(Split(images, labels), 6, Normalizer(0.1307, 0.3081)).epoch(0))
    assert torch.allclose(batch[3], x, atol=1e-5)
    out = example.Net()(batch)
    assert out.shape == (6, 10) and torch.allclose(out.exp().sum(1), torch.ones(6), atol=1e-5)


# ---- start-up: help and usage errors import no torch -------------------------------------

def run_cli_in_fresh_python(*argv: str) -> tuple[int, str, list[str]]:
    """`mnistlab ARGV` in a new interpreter: exit status, stderr, heavy modules imported."""
    import json
    import subprocess
    import sys

    code = ("import json, sys\n"
            "from mnistlab.cli import main\n"
            "try:\n    status = main(sys.argv[1:])\n"
            "except SystemExit as e:\n    status = e.code\n"
            "heavy = [m for m in ('torch', 'numpy', 'matplotlib', 'PIL') if m in sys.modules]\n"
            "print(json.dumps([status, heavy]), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          timeout=120)
    *lines, last = done.stderr.strip().splitlines()
    status, heavy = json.loads(last)
    return status, "\n".join(lines), heavy


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["eval", "--help"],
                                  ["train", "--epochs", "x"], ["train", "--bogus"], ["bogus"]])
def test_help_and_usage_errors_import_no_torch(argv):
    status, _, heavy = run_cli_in_fresh_python(*argv)
    assert status in (0, 2)
    assert heavy == []  # torch costs 1.5-2 s to import; help must answer at once


def test_an_unknown_option_points_to_the_commands_own_help():
    status, err, _ = run_cli_in_fresh_python("eval", "some-run", "--bogus")
    assert status == 2
    assert err == ("mnistlab: error: unrecognized arguments: --bogus "
                   "(see 'mnistlab eval --help')")
    status, err, _ = run_cli_in_fresh_python("bogus")  # no command: the top-level help
    assert status == 2 and err.endswith("(see 'mnistlab --help')")


def test_names_spelled_out_for_a_fast_start_match_the_imported_ones():
    from mnistlab.cli import MODEL_NAMES
    from mnistlab.doctor.losses import LOSS_NAMES
    from mnistlab.models import MODELS

    assert list(MODELS) == MODEL_NAMES
    parser = __import__("mnistlab.cli", fromlist=["build_parser"]).build_parser()
    doctor = parser._subparsers._group_actions[0].choices["doctor"]
    loss = next(a for a in doctor._actions if a.dest == "loss")
    assert tuple(loss.choices) == tuple(LOSS_NAMES)
