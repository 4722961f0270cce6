"""Not-a-digit scores on a classifier's penultimate features, fitted on training digits only.

Used by benchmarks/detectors.py, which compares them with the softmax scores of the gate
(docs/detectors.md). They were not kept: on the default model they reject fewer non-digits
than its max-softmax, so they live here, next to the benchmark, and not in the library
(issue 18: code kept only to compare a method stays out of src/). A score fitted on digits
alone cannot overfit to the non-digits it was shown, which is why they were tried:

    feats, logits = features_and_logits(model, normalizer(images))   # one forward pass
    maha = MahalanobisScore().fit(train_feats, train_labels)         # training digits only
    threshold = threshold_for(maha.score(val_feats), accept=0.995)    # validation digits
    is_digit = maha.score(feats) >= threshold

The features are the input of the model's last `nn.Linear` (every zoo model but the
all-convolutional one ends in one; there, the input of its last 1x1 convolution, averaged
over the positions), caught by a forward hook, so no model needs to change. Every score is
"higher = more digit-like", and every fitted detector is plain tensors and numbers
(`to_state()`), loadable with `torch.load(weights_only=True)`.

- MahalanobisScore: minus the smallest Mahalanobis distance to the ten class means, with one
  covariance shared by the classes (Lee, Lee, Lee and Shin, NeurIPS 2018).
- KNNScore: the cosine similarity to the k-th nearest training digit's normalised feature
  (Sun, Ming, Zhu and Li, ICML 2022), on a seeded subsample of the training digits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from mnistlab.errors import MnistlabError

# Added to the shared covariance's diagonal, relative to its mean variance: ReLU features
# have dimensions that are always zero, which leave the covariance singular.
RIDGE = 1e-3


def output_layer(model: nn.Module) -> nn.Linear | nn.Conv2d:
    """The layer that makes the logits: the model's last nn.Linear (registration order), or
    for an all-convolutional model without one (`allconv-bn`) its last nn.Conv2d, a 1x1
    convolution whose scores are averaged over the positions."""
    for kind in (nn.Linear, nn.Conv2d):
        layers = [m for m in model.modules() if isinstance(m, kind)]
        if layers:
            return layers[-1]
    raise MnistlabError(f"{type(model).__name__} has no nn.Linear or nn.Conv2d layer: no "
                        "penultimate features to score")


def last_linear(model: nn.Module) -> nn.Linear:
    """The model's last nn.Linear (its output layer, for every zoo model but allconv-bn)."""
    layer = output_layer(model)
    if not isinstance(layer, nn.Linear):
        raise MnistlabError(f"{type(model).__name__} has no nn.Linear layer")
    return layer


@torch.no_grad()
def features_and_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1000
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) penultimate features and (N, C) logits of normalised images x (N, 1, 28, 28),
    float32 on the CPU, in eval mode (the model's mode is restored). One forward pass: the
    features are what the output layer (`output_layer`) receives, averaged over the
    positions when it is a convolution (for a 1x1 convolution followed by average pooling,
    as in allconv-bn, the logits are then the layer's weights applied to these features)."""
    layer = output_layer(model)
    conv = isinstance(layer, nn.Conv2d)
    caught: list[torch.Tensor] = []

    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...], _output: Any) -> None:
        x = inputs[0].detach().float()
        caught.append(x.mean((2, 3)) if conv else x.flatten(1))

    handle = layer.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    features, logits = [], []
    try:
        for start in range(0, len(x), batch_size):
            caught.clear()
            logits.append(model(x[start : start + batch_size]).float().cpu())
            if len(caught) != 1:  # a model calling its output layer twice: not "penultimate"
                raise MnistlabError(f"{type(model).__name__}: its output layer ran "
                                    f"{len(caught)} times in one forward pass")
            features.append(caught[0].cpu())
    finally:
        handle.remove()
        model.train(was_training)
    if not features:
        width = layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels
        return torch.empty(0, width), torch.empty(0, 0)
    return torch.cat(features), torch.cat(logits)


def penultimate_features(model: nn.Module, x: torch.Tensor,
                         batch_size: int = 1000) -> torch.Tensor:
    """(N, D) float32 features: the input of the model's output layer (see above)."""
    return features_and_logits(model, x, batch_size)[0]


def threshold_for(scores: torch.Tensor, accept: float = 0.995) -> float:
    """The lowest score that keeps a share `accept` of these (validation digit) scores."""
    if not 0.0 < accept <= 1.0:
        raise MnistlabError(f"detector: accept must be in (0, 1], got {accept}")
    if scores.ndim != 1 or len(scores) == 0:
        raise MnistlabError(f"detector: need a non-empty (N,) tensor of scores to calibrate "
                            f"on, got shape {tuple(scores.shape)}")
    if not torch.isfinite(scores).all():
        raise MnistlabError("detector: scores to calibrate on are not finite")
    return float(torch.quantile(scores.double(), 1.0 - accept, interpolation="lower"))


def _features(features: torch.Tensor, dim: int | None, what: str) -> torch.Tensor:
    if features.ndim != 2 or (dim is not None and features.shape[1] != dim):
        want = f"(N, {dim})" if dim is not None else "(N, D)"
        raise MnistlabError(f"{what}: expected {want} features, got shape "
                            f"{tuple(features.shape)}")
    return features.detach().float().cpu()


def _tensor(state: Mapping[str, Any], key: str, what: str) -> torch.Tensor:
    value = state.get(key)
    if not isinstance(value, torch.Tensor):
        raise MnistlabError(f"{what}: state has no tensor '{key}' (damaged checkpoint?)")
    return value


class MahalanobisScore:
    """Minus the smallest squared Mahalanobis distance to a class mean (shared covariance).

    fit: class means mu_c and the covariance of x - mu_y over the training digits;
    score(x) = -min_c (x - mu_c)^T S^-1 (x - mu_c). Computed as squared Euclidean distances
    after the whitening x -> x W with W W^T = S^-1, so a score is one (D x D) product and
    one (D x C) product per image.
    """

    KIND = "mahalanobis"

    def __init__(self) -> None:
        self.means: torch.Tensor | None = None  # (C, D) float32
        self.whiten: torch.Tensor | None = None  # (D, D) float32

    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> MahalanobisScore:
        x = _features(features, None, "Mahalanobis fit").double()
        labels = labels.detach().cpu().long()
        if labels.shape != (len(x),):
            raise MnistlabError(f"Mahalanobis fit: {len(x)} features but labels of shape "
                                f"{tuple(labels.shape)}")
        classes = sorted(int(c) for c in labels.unique())
        if len(classes) < 1 or len(x) <= len(classes):
            raise MnistlabError("Mahalanobis fit: need more training features than classes")
        index = torch.as_tensor(classes)
        means = torch.stack([x[labels == c].mean(0) for c in classes])
        centred = x - means[torch.searchsorted(index, labels)]
        cov = centred.T @ centred / len(x)
        ridge = RIDGE * float(cov.diagonal().mean().clamp_min(1e-12))
        cov = cov + ridge * torch.eye(cov.shape[0], dtype=cov.dtype)
        # S^-1 = W W^T with W = L^-T for S = L L^T (a Cholesky factor)
        chol = torch.linalg.cholesky(cov)
        eye = torch.eye(cov.shape[0], dtype=cov.dtype)
        self.whiten = torch.linalg.solve_triangular(chol, eye, upper=False).T.float()
        self.means = means.float()
        return self

    def score(self, features: torch.Tensor) -> torch.Tensor:
        if self.means is None or self.whiten is None:
            raise MnistlabError("Mahalanobis score: fit() it first")
        x = _features(features, self.means.shape[1], "Mahalanobis score")
        z, m = x @ self.whiten, self.means @ self.whiten
        dist = (z.square().sum(1, keepdim=True) - 2 * z @ m.T + m.square().sum(1))
        return -dist.clamp_min(0).amin(1)

    def to_state(self) -> dict[str, Any]:
        if self.means is None or self.whiten is None:
            raise MnistlabError("Mahalanobis score: nothing to save before fit()")
        return {"kind": self.KIND, "means": self.means.clone(), "whiten": self.whiten.clone()}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> MahalanobisScore:
        what = "Mahalanobis state"
        if not isinstance(state, Mapping) or state.get("kind") != cls.KIND:
            raise MnistlabError(f"{what}: not a '{cls.KIND}' detector")
        means, whiten = _tensor(state, "means", what), _tensor(state, "whiten", what)
        d = means.shape[-1]
        if means.ndim != 2 or whiten.shape != (d, d):
            raise MnistlabError(f"{what}: means {tuple(means.shape)} and whiten "
                                f"{tuple(whiten.shape)} do not fit together")
        out = cls()
        out.means, out.whiten = means.float(), whiten.float()
        return out


class KNNScore:
    """Cosine similarity to the k-th nearest training feature (higher = more digit-like).

    The features are L2-normalised; fit keeps a seeded subsample of at most `bank` of them
    (the cost of a score, and the size of the state, grow with it).
    """

    KIND = "knn"

    def __init__(self, k: int = 10, bank: int = 10_000, seed: int = 0) -> None:
        if k < 1 or bank < k:
            raise MnistlabError(f"kNN score: need 1 <= k <= bank, got k={k}, bank={bank}")
        self.k, self.bank_size, self.seed = k, bank, seed
        self.bank: torch.Tensor | None = None  # (M, D) float32, unit rows

    @staticmethod
    def _normalise(x: torch.Tensor) -> torch.Tensor:
        return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def fit(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> KNNScore:
        """`labels` are not used (kNN ignores the class); accepted for a common signature."""
        x = _features(features, None, "kNN fit")
        if len(x) < self.k:
            raise MnistlabError(f"kNN fit: need at least k={self.k} features, got {len(x)}")
        if len(x) > self.bank_size:
            pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.seed))
            x = x[pick[: self.bank_size]]
        self.bank = self._normalise(x)
        return self

    def score(self, features: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
        if self.bank is None:
            raise MnistlabError("kNN score: fit() it first")
        x = self._normalise(_features(features, self.bank.shape[1], "kNN score"))
        out = [(q @ self.bank.T).topk(self.k, dim=1).values[:, -1]
               for q in x.split(chunk)]
        return torch.cat(out) if out else torch.empty(0)

    def to_state(self) -> dict[str, Any]:
        if self.bank is None:
            raise MnistlabError("kNN score: nothing to save before fit()")
        return {"kind": self.KIND, "k": self.k, "bank": self.bank.clone()}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> KNNScore:
        what = "kNN state"
        if not isinstance(state, Mapping) or state.get("kind") != cls.KIND:
            raise MnistlabError(f"{what}: not a '{cls.KIND}' detector")
        bank = _tensor(state, "bank", what)
        k = state.get("k")
        if not isinstance(k, int) or bank.ndim != 2 or not 1 <= k <= len(bank):
            raise MnistlabError(f"{what}: k={k!r} does not fit a bank of shape "
                                f"{tuple(bank.shape)}")
        out = cls(k=k, bank=len(bank))
        out.bank = bank.float()
        return out


DETECTORS: dict[str, type[MahalanobisScore] | type[KNNScore]] = {
    MahalanobisScore.KIND: MahalanobisScore, KNNScore.KIND: KNNScore}


def detector_from_state(state: Mapping[str, Any]) -> MahalanobisScore | KNNScore:
    """The fitted detector a `to_state()` dict describes."""
    kind = state.get("kind") if isinstance(state, Mapping) else None
    if kind not in DETECTORS:
        raise MnistlabError(f"detector state: unknown kind {kind!r} (known: "
                            f"{', '.join(DETECTORS)})")
    return DETECTORS[kind].from_state(state)
