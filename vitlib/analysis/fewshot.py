"""Few-shot linear accuracy from frozen features (§4.1): regularised least squares from the
representation to {-1, 1}^K targets, solved in closed form.

The solver is sklearn's RidgeClassifier formulation exactly (centred features and targets, an
unregularised intercept, arg-max prediction), so `few_shot_accuracy(..., l2=a)` makes the same
predictions as `RidgeClassifier(alpha=a)`; tests check this.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from vitlib.data import normalize


def _check_features(features: Tensor, labels: Tensor, name: str) -> None:
    if features.ndim != 2 or labels.ndim != 1 or features.shape[0] != labels.shape[0]:
        raise ValueError(f"{name}_features must be (N, F) and {name}_labels (N,) with the same N, "
                         f"got {tuple(features.shape)} and {tuple(labels.shape)}")


def fit_least_squares(features: Tensor, labels: Tensor, l2: float = 1.0):
    """Ridge regression to {-1, 1}^K targets. Returns (weight (F, K), bias (K,), classes (K,)),
    float64 on the CPU; classes are the sorted distinct training labels (column order)."""
    if not l2 > 0:
        raise ValueError(f"l2 must be > 0, got {l2}")
    _check_features(features, labels, "train")
    x = features.detach().to("cpu", torch.float64)  # (N, F)
    labels = labels.detach().cpu()
    classes = torch.unique(labels)  # sorted
    if len(classes) < 2:
        raise ValueError(f"train_labels must hold at least 2 classes, got {classes.tolist()}")
    y = torch.where(labels[:, None] == classes[None, :], 1.0, -1.0).double()  # (N, K)
    x_mean, y_mean = x.mean(dim=0), y.mean(dim=0)
    xc, yc = x - x_mean, y - y_mean  # centring = an intercept that the penalty leaves alone
    n, f = xc.shape
    if n < f:  # dual: W = Xc^T (Xc Xc^T + l2 I)^-1 Yc, an N x N system
        gram = xc @ xc.T + l2 * torch.eye(n, dtype=torch.float64)
        weight = xc.T @ torch.linalg.solve(gram, yc)
    else:  # primal: (Xc^T Xc + l2 I) W = Xc^T Yc, an F x F system
        gram = xc.T @ xc + l2 * torch.eye(f, dtype=torch.float64)
        weight = torch.linalg.solve(gram, xc.T @ yc)
    bias = y_mean - x_mean @ weight
    return weight, bias, classes


def few_shot_accuracy(train_features: Tensor, train_labels: Tensor, test_features: Tensor,
                      test_labels: Tensor, l2: float = 1.0) -> float:
    """Top-1 accuracy in [0, 1] of the closed-form least-squares probe fitted on the train set."""
    _check_features(test_features, test_labels, "test")
    if test_features.shape[1] != train_features.shape[-1]:
        raise ValueError(f"test_features has {test_features.shape[1]} features, train_features "
                         f"{train_features.shape[-1]}")
    weight, bias, classes = fit_least_squares(train_features, train_labels, l2)
    scores = test_features.detach().to("cpu", torch.float64) @ weight + bias  # (M, K)
    pred = classes[scores.argmax(dim=1)]
    return (pred == test_labels.detach().cpu()).double().mean().item()


def sample_k_shot(labels: Tensor, k: int, seed: int) -> Tensor:
    """Indices of k examples per class (every class present in `labels`), drawn without
    replacement by a generator seeded with `seed`; (K*k,) int64, grouped by sorted class."""
    labels = labels.detach().cpu()
    classes, counts = torch.unique(labels, return_counts=True)
    if k < 1 or k > int(counts.min()):
        raise ValueError(f"k must be in [1, {int(counts.min())}] (the smallest class size), "
                         f"got {k}")
    gen = torch.Generator().manual_seed(seed)
    picks = []
    for c in classes:
        idx = torch.nonzero(labels == c).flatten()
        picks.append(idx[torch.randperm(len(idx), generator=gen)[:k]])
    return torch.cat(picks)


def few_shot_eval(train_features: Tensor, train_labels: Tensor, test_features: Tensor,
                  test_labels: Tensor, shots: Sequence[int] = (1, 5, 10, 25),
                  seeds: Sequence[int] = (0, 1, 2),
                  l2: float = 1.0) -> dict[int, tuple[float, float]]:
    """{k: (mean, std)} of few-shot accuracy in [0, 1] over `seeds`, each seed drawing a different
    k-per-class subset of the train features; std is the sample std (0 for a single seed)."""
    if not seeds:
        raise ValueError("seeds must not be empty")
    _check_features(train_features, train_labels, "train")
    max_k = int(torch.unique(train_labels.cpu(), return_counts=True)[1].min())
    if any(not 1 <= k <= max_k for k in shots):
        raise ValueError(f"every shot count must be in [1, {max_k}], got {tuple(shots)}")
    results = {}
    for k in shots:
        accs = []
        for seed in seeds:
            idx = sample_k_shot(train_labels, k, seed)
            accs.append(few_shot_accuracy(train_features[idx.to(train_features.device)],
                                          train_labels[idx.to(train_labels.device)],
                                          test_features, test_labels, l2))
        acc = torch.tensor(accs, dtype=torch.float64)
        std = acc.std().item() if len(accs) > 1 else 0.0
        results[int(k)] = (acc.mean().item(), std)
    return results


@torch.no_grad()
def extract_features(model: nn.Module, data, device=None, batch_size: int = 256) -> Tensor:
    """Frozen pre-logit features (N, F) float32 on the CPU:
    `model.forward_head(model.forward_features(x), pre_logits=True)` (ViT and ResNets alike).

    `data` is an ImageDataset (uint8 `images`, per-channel `mean`/`std` on the 0..1 scale), which
    is normalised here, or a float tensor (N, C, H, W) that is already normalised. The model runs
    in eval mode on `device` (default: where its parameters are; otherwise the model is moved
    there); its train/eval mode is restored after.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if hasattr(data, "images"):
        images, stats = data.images, (data.mean, data.std)
    elif isinstance(data, Tensor) and data.is_floating_point() and data.ndim == 4:
        images, stats = data, None
    else:
        raise ValueError("data must be an ImageDataset or a normalised float (N, C, H, W) tensor, "
                         f"got {type(data).__name__}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.to(device).eval()
    feats = []
    try:
        for start in range(0, images.shape[0], batch_size):
            x = images[start:start + batch_size].to(device, non_blocking=True)
            if stats is not None:
                x = normalize(x, *stats)
            out = model.forward_head(model.forward_features(x), pre_logits=True)
            feats.append(out.float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(feats)
