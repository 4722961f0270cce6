"""Checks 6-8: the training setup around the model.

Too few optimizer steps, inputs that were not standardised, labels in a form the loss does
not expect, data fed in class order, and the test split used for training or selection.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from mnistlab.doctor.findings import Finding
from mnistlab.doctor.losses import Loss

UPDATES_ERROR, UPDATES_WARN = 100, 250


def check_updates(epochs: int, batch_size: int, train_size: int) -> tuple[dict[str, Any],
                                                                        list[Finding]]:
    per_epoch = math.ceil(train_size / batch_size)
    total = epochs * per_epoch
    m = {"epochs": epochs, "batch_size": batch_size, "train_size": train_size,
         "steps_per_epoch": per_epoch, "total": total}
    if total >= UPDATES_WARN:
        return m, []
    suggested = 128
    suggested_total = epochs * math.ceil(train_size / suggested)
    return m, [Finding(
        "too-few-updates", "error" if total < UPDATES_ERROR else "warning",
        f"{epochs} epochs x ceil({train_size:,} / {batch_size:,}) = {total:,} optimizer steps",
        {**m, "with_batch_128": suggested_total},
        "Every optimizer step is one update of the weights, however many images the batch "
        f"holds. A network needs hundreds to thousands of updates to learn MNIST; {total} "
        "steps leave it close to where it started. Bigger batches do not make up for it: the "
        "gradient of 60,000 images points the same way as that of 128, only less noisily.",
        f"batch_size = {suggested}    # {math.ceil(train_size / suggested):,} steps per epoch; "
        f"{epochs} epochs = {suggested_total:,} updates\n"
        "loader = DataLoader(train_set, batch_size=128, shuffle=True)   "
        "# or: mnistlab train --batch-size 128")]


def check_inputs(x: torch.Tensor) -> tuple[dict[str, Any], list[Finding]]:
    x = x.detach().float()
    m = {"mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()),
         "max": float(x.max())}
    if m["min"] < 0:  # centred in some way; standardisation proper is not required
        return m, []
    raw = m["max"] > 2.0
    return m, [Finding(
        "inputs-not-normalized", "error" if raw else "warning",
        f"the inputs are not standardised: pixels in [{m['min']:.3g}, {m['max']:.4g}], "
        f"mean {m['mean']:.3g}, std {m['std']:.3g}",
        m,
        ("Pixels of 0-255 give first-layer outputs ~255 times the scale the initialisation "
         "assumes: huge logits, a saturated softmax, and a learning rate that is wrong by "
         "orders of magnitude." if raw else
         "Inputs that are all non-negative with mean 0.13 and std 0.31 make every first-layer "
         "gradient share a sign pattern and shrink the signal's scale; standardised inputs "
         "(mean 0, std 1) train faster and tolerate higher learning rates."),
        "x = (images / 255.0 - 0.1307) / 0.3081       # MNIST mean and std\n"
        "# torchvision: transforms.Compose([transforms.ToTensor(),\n"
        "#                                  transforms.Normalize((0.1307,), (0.3081,))])")]


def check_labels(labels: torch.Tensor, loss: Loss, classes: int,
                 output: torch.Tensor | None = None) -> list[Finding]:
    y = labels
    ev: dict[str, Any] = {"dtype": str(y.dtype).replace("torch.", ""), "shape": list(y.shape)}
    if y.numel():
        ev.update(min=float(y.min()), max=float(y.max()))
    if output is not None:
        try:
            with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                loss.fn(output, y)
            ev["loss_call"] = "ran" + (f" with a warning: {str(caught[0].message)[:160]}"
                                       if caught else "")
        except Exception as e:  # the user's loss on the user's labels: report what it says
            ev["loss_call"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:160]}"
    index_fix = ("y = y.argmax(dim=1)          # one-hot -> class indices\n"
                 "y = y.long()                 # int64 class indices 0..9, shape (B,)\n"
                 "loss = F.cross_entropy(logits, y)")
    floating = y.is_floating_point()
    if loss.targets == "one_hot":
        if y.dim() == 1:
            return [Finding(
                "labels-not-one-hot", "error",
                f"the loss {loss.name} compares outputs (B, {classes}) with class indices (B,)",
                ev,
                "A regression loss needs a target per output: indices broadcast against the "
                "outputs (or fail), so the model learns to output the label number itself.",
                f"target = F.one_hot(y, {classes}).float()\n"
                "loss = F.mse_loss(model(x), target)    # or F.cross_entropy(model(x), y)")]
        return []
    if y.dim() == 2 and y.shape[1] == classes:
        one_hot = bool(((y == 0) | (y == 1)).all() and (y.sum(1) == 1).all())
        ev["one_hot"] = one_hot
        if floating and loss.kind == "cross_entropy":
            return [Finding(
                "labels-one-hot", "note",
                "labels are float class probabilities (one-hot rows), not class indices",
                ev,
                "F.cross_entropy accepts probability targets (PyTorch >= 1.10) and computes the "
                "same loss, but accuracy code, confusion matrices and NLLLoss expect indices.",
                index_fix)]
        return [Finding(
            "labels-one-hot", "error",
            f"labels are one-hot ({ev['dtype']}, shape {list(y.shape)}), but {loss.name} "
            "expects class indices of shape (B,)",
            ev,
            "The loss reads the target as one class index per image; a (B, 10) matrix either "
            "fails or is read as something else entirely.",
            index_fix)]
    if y.dim() != 1:
        return [Finding(
            "labels-wrong-shape", "error",
            f"labels have shape {list(y.shape)}; the loss expects (B,) class indices",
            ev, "Each image needs exactly one class index.", index_fix)]
    if floating:
        return [Finding(
            "labels-float", "error",
            f"labels are floats ({ev['dtype']}); the loss expects int64 class indices",
            ev,
            "cross_entropy/nll_loss index the output with the label; float labels either fail "
            "or are read as class probabilities of the wrong shape.",
            "y = y.long()")]
    bad = (y < 0) | (y >= classes)
    if bad.any():
        return [Finding(
            "labels-out-of-range", "error",
            f"labels run from {int(y.min())} to {int(y.max())}; a {classes}-class output needs "
            f"0..{classes - 1}",
            {**ev, "out_of_range_fraction": float(bad.float().mean())},
            "A label outside 0..C-1 indexes past the output: PyTorch raises an index error on "
            "CPU and a device-side assert on CUDA, or, shifted by one, trains every class "
            "against its neighbour's output.",
            "y = y - 1        # if the labels are 1..10\n"
            f"assert 0 <= y.min() and y.max() < {classes}")]
    return []


def check_order(labels: torch.Tensor, shuffle: bool, batch_size: int) -> list[Finding]:
    """Labels in the order the training loop will see them (before any shuffling)."""
    if shuffle or len(labels) < 2:
        return []
    y = labels.flatten()
    same_next = float((y[1:] == y[:-1]).float().mean())
    head = y[: min(batch_size, len(y))]
    ev = {"adjacent_same_label_fraction": same_next,
          "classes_in_first_batch": len(torch.unique(head)),
          "first_labels": y[:8].tolist()}
    # Random order: about 1/classes of neighbours agree; sorted: almost all do.
    if same_next > 0.5:
        return [Finding(
            "ordered-by-class", "error",
            f"the training data is sorted by class and shuffling is off: "
            f"{same_next:.0%} of neighbouring labels are equal",
            ev,
            "Batches then hold one class at a time: the model learns to predict that class, "
            "forgets it when the next class comes, and ends each epoch predicting the last "
            "classes it saw (about 10-20% accuracy).",
            "DataLoader(train_set, batch_size=128, shuffle=True)\n"
            "# or by hand: perm = torch.randperm(n); x, y = x[perm], y[perm]  (every epoch)")]
    return [Finding(
        "shuffle-off", "note",
        "shuffling is off; the data is not sorted by class, so this works, but every epoch "
        "repeats the same batches",
        ev,
        "Reshuffling every epoch gives different batches, a less biased gradient estimate and "
        "usually slightly better accuracy.",
        "DataLoader(train_set, batch_size=128, shuffle=True)")]


def check_test_split(trains_on_test: bool, selects_on_test: bool,
                     overlap: int | None = None, test_size: int | None = None) -> list[Finding]:
    findings = []
    if trains_on_test or (overlap or 0) > 0:
        ev: dict[str, Any] = {"trains_on_test": trains_on_test}
        if overlap is not None:
            ev.update(test_images_in_training=overlap, test_size=test_size)
        findings.append(Finding(
            "trains-on-test", "error", "the test images are part of the training data",
            ev,
            "A test set the model has trained on measures memory, not generalisation: the "
            "reported accuracy is too high and means nothing for new handwriting.",
            "train on the 60,000 training images only; hold out part of them for validation:\n"
            "from mnistlab.data.pipeline import train_val_split\n"
            "train, val = train_val_split(images, labels, val_size=5000, seed=0)"))
    if selects_on_test:
        findings.append(Finding(
            "selects-on-test", "error",
            "the best epoch (or hyper-parameters) is chosen by test accuracy",
            {"selects_on_test": True},
            "Choosing by test accuracy fits the choice to the test set; the test accuracy of "
            "the chosen model is then optimistically biased. Choose on a validation split and "
            "look at the test set once, at the end.",
            "select on a validation split held out from the training set\n"
            "(mnistlab train does: --val-size 5000; the test set is evaluated once)"))
    return findings


def count_overlap(train_images: torch.Tensor, test_images: torch.Tensor) -> int:
    """How many test images also occur (byte for byte) among the training images."""
    def rows(images: torch.Tensor) -> list[bytes]:
        flat = images.reshape(len(images), -1).contiguous().cpu().numpy()
        return [row.tobytes() for row in flat]
    train = set(rows(train_images))
    return sum(k in train for k in rows(test_images))
