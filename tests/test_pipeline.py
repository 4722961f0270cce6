"""The in-memory pipeline: splits, normalisation, batching by index gather, augmentation."""

from __future__ import annotations

import pytest
import torch

from conftest import draw_digits
from mnistlab.data.pipeline import Augment, Batcher, Normalizer, Split, train_val_split


@pytest.fixture(scope="module")
def split() -> Split:
    images, labels = draw_digits(1000, seed=3)
    return Split(torch.from_numpy(images), torch.from_numpy(labels).long())


def as_ids(split: Split) -> Split:
    """Give every image a unique id in its first pixels, to trace where it went."""
    images = torch.zeros(len(split), 28, 28, dtype=torch.uint8)
    ids = torch.arange(len(split))
    images[:, 0, 0], images[:, 0, 1] = ids % 256, ids // 256
    return Split(images, ids)


def ids_of(x_u8: torch.Tensor) -> list[int]:
    return (x_u8[:, 0, 0].long() + 256 * x_u8[:, 0, 1].long()).tolist()


def test_train_val_split_sizes_disjoint_and_seeded(split):
    train, val = train_val_split(split.images, split.labels, 100, seed=0)
    assert (len(train), len(val)) == (900, 100)
    traced = as_ids(split)
    t, v = train_val_split(traced.images, traced.labels, 100, seed=0)
    assert set(t.labels.tolist()).isdisjoint(v.labels.tolist())
    assert sorted(t.labels.tolist() + v.labels.tolist()) == list(range(1000))
    assert torch.equal(ids_of_split(t), t.labels)  # images travel with their labels
    again = train_val_split(traced.images, traced.labels, 100, seed=0)[1]
    other = train_val_split(traced.images, traced.labels, 100, seed=1)[1]
    assert torch.equal(again.labels, v.labels) and not torch.equal(other.labels, v.labels)


def ids_of_split(s: Split) -> torch.Tensor:
    return torch.tensor(ids_of(s.images))


@pytest.mark.parametrize("val_size", [-1, 1000, 5000])
def test_train_val_split_rejects_impossible_sizes(split, val_size):
    with pytest.raises(ValueError, match="val_size"):
        train_val_split(split.images, split.labels, val_size, seed=0)


def test_zero_validation_images_is_allowed(split):
    train, val = train_val_split(split.images, split.labels, 0, seed=0)
    assert len(train) == 1000 and len(val) == 0


def test_normalizer_standardises_the_training_split(split):
    norm = Normalizer.fit(split.images)
    x = norm(split.images)
    assert x.shape == (1000, 1, 28, 28) and x.dtype == torch.float32
    assert float(x.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(x.std()) == pytest.approx(1.0, abs=1e-4)
    reference = (split.images.double() / 255 - norm.mean) / norm.std
    torch.testing.assert_close(x.double().squeeze(1), reference, atol=1e-5, rtol=0)
    assert norm(split.images[:2], dtype=torch.float64).dtype == torch.float64


def test_normalizer_does_not_modify_its_input(split):
    before = split.images.clone()
    Normalizer(0.1307, 0.3081)(split.images)
    assert torch.equal(before, split.images)


def epoch_ids(batcher: Batcher, epoch: int, start: int = 0) -> list[list[int]]:
    return [y.tolist() for _, y in batcher.epoch(epoch, start)]


IDENTITY = Normalizer(0.0, 1.0 / 255)  # x * 1: batches keep the raw pixel values


def test_batcher_covers_every_index_once_per_epoch(split):
    traced = as_ids(split)
    batcher = Batcher(traced, 64, IDENTITY, shuffle=True, seed=0)
    assert len(batcher) == 16  # 15 full batches and one of 40
    for epoch in range(3):
        batches = list(batcher.epoch(epoch))
        assert [len(y) for _, y in batches] == [64] * 15 + [40]
        seen = [i for _, y in batches for i in y.tolist()]
        assert sorted(seen) == list(range(1000))
        for x, y in batches:  # the batch's images are the labels' images
            assert ids_of(x.squeeze(1).round().to(torch.uint8)) == y.tolist()


def test_drop_last_drops_the_partial_batch(split):
    batcher = Batcher(split, 64, IDENTITY, shuffle=True, drop_last=True)
    assert len(batcher) == 15 and [len(y) for _, y in batcher.epoch(0)] == [64] * 15


def test_shuffle_differs_between_epochs_and_is_reproducible(split):
    traced = as_ids(split)
    a = Batcher(traced, 100, IDENTITY, shuffle=True, seed=7)
    b = Batcher(traced, 100, IDENTITY, shuffle=True, seed=7)
    c = Batcher(traced, 100, IDENTITY, shuffle=True, seed=8)
    assert epoch_ids(a, 0) != epoch_ids(a, 1)
    assert epoch_ids(a, 1) == epoch_ids(b, 1)
    assert epoch_ids(a, 1) != epoch_ids(c, 1)
    plain = Batcher(traced, 100, IDENTITY)
    assert [i for b in epoch_ids(plain, 5) for i in b] == list(range(1000))  # no shuffle: in order


def test_start_resumes_mid_epoch_with_the_same_batches(split):
    aug = Batcher(split, 64, Normalizer.fit(split.images), shuffle=True, seed=1, augment=Augment())
    full = list(aug.epoch(2))
    resumed = list(aug.epoch(2, start=5))
    assert len(resumed) == len(full) - 5
    for (x, y), (rx, ry) in zip(full[5:], resumed, strict=True):
        assert torch.equal(y, ry) and torch.equal(x, rx)


def test_shards_partition_the_epoch(split):
    traced = as_ids(split)
    r0 = Batcher(traced, 50, IDENTITY, shuffle=True, seed=2, shard=(0, 2))
    r1 = Batcher(traced, 50, IDENTITY, shuffle=True, seed=2, shard=(1, 2))
    assert len(r0) == len(r1) == 10
    a = [i for b in epoch_ids(r0, 3) for i in b]
    b = [i for b in epoch_ids(r1, 3) for i in b]
    assert len(a) == len(b) == 500
    assert set(a).isdisjoint(b) and sorted(a + b) == list(range(1000))
    odd = Split(traced.images[:999], traced.labels[:999])  # 999 = 2 * 499 + 1: one left out
    s0, s1 = (Batcher(odd, 50, IDENTITY, shuffle=True, shard=(r, 2)) for r in (0, 1))
    assert sum(map(len, epoch_ids(s0, 0))) == sum(map(len, epoch_ids(s1, 0))) == 499


def test_batcher_rejects_a_bad_batch_size(split):
    with pytest.raises(ValueError, match="batch_size"):
        Batcher(split, 0, IDENTITY)


def test_augmentation_keeps_shape_changes_pixels_and_is_reproducible(split):
    norm = Normalizer.fit(split.images)
    plain = Batcher(split, 128, norm, shuffle=True, seed=4)
    aug = Batcher(split, 128, norm, shuffle=True, seed=4, augment=Augment())
    (x, y), (ax, ay) = next(iter(plain.epoch(1))), next(iter(aug.epoch(1)))
    assert torch.equal(y, ay) and ax.shape == x.shape and ax.dtype == x.dtype
    changed = (ax - x).abs().amax(dim=(1, 2, 3)) > 0.1
    assert changed.float().mean() > 0.9  # nearly every image moved
    # still the same digits: the background stays at the normalised black level
    assert float(ax.amin()) == pytest.approx(float(x.amin()), abs=1e-5)
    assert torch.equal(ax, next(iter(aug.epoch(1)))[0])  # same (seed, epoch, batch)
    assert not torch.equal(ax, next(iter(aug.epoch(2)))[0])  # another epoch
    assert not torch.equal(list(aug.epoch(1))[1][0], ax[: len(list(aug.epoch(1))[1][0])])


def test_augmentation_shifts_like_the_settings_say():
    image = torch.zeros(1, 1, 28, 28)
    image[0, 0, 12:16, 12:16] = 1.0
    shift = Augment(max_shift=3.0, max_rotate=0.0, max_scale=0.0)
    outs = torch.cat([shift(image, torch.Generator().manual_seed(s)) for s in range(50)])
    rows = torch.arange(28.0)
    mass = outs.sum(dim=(1, 2, 3))
    cy = (outs.sum(dim=3).squeeze(1) * rows).sum(1) / mass
    assert float((cy - 13.5).abs().max()) <= 3.0 + 1e-4
    assert float((cy - 13.5).abs().max()) > 1.5  # it does move things


def test_elastic_distortion_moves_pixels_by_about_its_setting_and_smoothly():
    # A grid of one-pixel dots: with no affine part, every dot moves by the displacement at
    # its place, so the moves' spread is the setting, and neighbours move alike (smooth).
    image = torch.zeros(64, 1, 28, 28)
    image[:, 0, 14, 14] = 1.0
    bend = Augment(max_shift=0.0, max_rotate=0.0, max_scale=0.0, elastic=1.5)
    out = bend(image, torch.Generator().manual_seed(0))
    rows = torch.arange(28.0)
    mass = out.sum(dim=(1, 2, 3))
    cy = (out.sum(dim=3).squeeze(1) * rows).sum(1) / mass
    cx = (out.sum(dim=2).squeeze(1) * rows).sum(1) / mass
    moves = torch.cat([cy - 14, cx - 14])
    assert 0.8 < float(moves.std()) < 2.5  # about 1.5 pixels (bilinear sampling blurs a little)
    assert torch.equal(out, bend(image, torch.Generator().manual_seed(0)))  # seeded
    field = bend._displacement(image[:1], torch.Generator().manual_seed(3))[0] * 14
    step = (field[1:] - field[:-1]).abs().mean()  # neighbouring pixels, in pixels
    assert float(step) < 0.3 * float(field.std())  # smooth, not pixel noise
    off = Augment(max_shift=0.0, max_rotate=0.0, max_scale=0.0)
    assert torch.allclose(off(image, torch.Generator().manual_seed(0)), image, atol=1e-5)


def test_elastic_needs_augment_and_a_sensible_size():
    from mnistlab.errors import MnistlabError
    from mnistlab.train import resolve_config

    with pytest.raises(MnistlabError, match=r"--elastic .*add --augment"):
        resolve_config("default", elastic=1.0)
    for bad in (-1.0, float("nan"), 100.0):
        with pytest.raises(MnistlabError, match=r"--elastic must be 0 to 8\.0 pixels"):
            resolve_config("best", elastic=bad)
    assert resolve_config("best", elastic=1.0).elastic == 1.0
