"""What a ViT's embeddings learned (§4.5, Fig. 7 left and centre): principal components of the
patch-embedding filters and the cosine similarity between position embeddings."""
from __future__ import annotations

import torch
from torch import Tensor, nn

NO_ABSOLUTE_POS_EMB = ("none", "relative")


def embedding_filter_pca(weight: Tensor, k: int = 28) -> tuple[Tensor, Tensor]:
    """Principal components of patch-embedding filters `weight` (D, C, P, P).

    Each of the D filters is a point in R^(C*P*P); after centring, the top-k right singular vectors
    are the principal directions. Returns (components (k, C, P, P), explained_variance_ratio (k,)),
    float64 on the CPU. SVD signs are arbitrary, so each component is flipped to make its largest
    absolute entry positive (sklearn's convention), which keeps figures stable across runs.
    """
    if weight.ndim != 4:
        raise ValueError(f"weight must be (D, C, P, P), got shape {tuple(weight.shape)}")
    d, c, ph, pw = weight.shape
    if not 1 <= k <= min(d, c * ph * pw):
        raise ValueError(f"k must be in [1, min(D, C*P*P)] = [1, {min(d, c * ph * pw)}], got {k}")
    x = weight.detach().to("cpu", torch.float64).reshape(d, -1)  # (D, C*P*P)
    x = x - x.mean(dim=0, keepdim=True)
    _, s, vt = torch.linalg.svd(x, full_matrices=False)  # vt: (r, C*P*P)
    comps = vt[:k]
    signs = torch.sign(comps.gather(1, comps.abs().argmax(dim=1, keepdim=True)))  # (k, 1)
    comps = comps * signs
    variance = s ** 2
    ratio = variance[:k] / variance.sum().clamp_min(1e-300)
    return comps.reshape(k, c, ph, pw), ratio


def rescale_unit(x: Tensor) -> Tensor:
    """Min-max rescale each item along dim 0 to [0, 1] for display (a constant item becomes 0)."""
    flat = x.reshape(x.shape[0], -1)
    lo, hi = flat.amin(dim=1, keepdim=True), flat.amax(dim=1, keepdim=True)
    return ((flat - lo) / (hi - lo).clamp_min(1e-12)).reshape(x.shape)


def embedding_filters(model: nn.Module, k: int = 28, return_variance: bool = False):
    """First k principal components of `model.patch_embed.proj.weight`, each rescaled to [0, 1]
    for display as in the paper's Fig. 7 (left): (k, C, P, P) float32. With return_variance=True
    also returns the explained-variance ratio (k,) of each component."""
    comps, ratio = embedding_filter_pca(model.patch_embed.proj.weight, k)
    filters = rescale_unit(comps).float()
    return (filters, ratio.float()) if return_variance else filters


def pos_embed_cosine_similarity(pos_embed: Tensor, grid: tuple[int, int]) -> Tensor:
    """Cosine similarity between every pair of patch position embeddings.

    `pos_embed` (gh*gw, D) in row-major patch order (class token excluded), from any absolute
    scheme: learned 1-D, learned 2-D, fixed sin-cos. Returns (gh, gw, gh, gw) float32 where
    [i, j] is the similarity map of the patch at row i, column j to all patches.
    """
    gh, gw = (int(g) for g in grid)
    if pos_embed.ndim != 2 or pos_embed.shape[0] != gh * gw:
        raise ValueError(f"pos_embed must be (gh*gw, D) = ({gh * gw}, D) for grid {gh}x{gw}, got "
                         f"{tuple(pos_embed.shape)}")
    unit = torch.nn.functional.normalize(pos_embed.detach().float(), dim=-1)  # (N, D)
    return (unit @ unit.T).reshape(gh, gw, gh, gw).cpu()


def pos_embed_similarity(model: nn.Module) -> Tensor:
    """(gh, gw, gh, gw) cosine similarity of a ViT's patch position embeddings (Fig. 7 centre)."""
    pos_emb = getattr(model, "pos_emb", None)
    pos = model.position_embeddings() if pos_emb not in NO_ABSOLUTE_POS_EMB else None
    if pos is None:
        raise ValueError(f"pos_embed_similarity needs an absolute position embedding (learned, "
                         f"learned2d or sincos2d); this model has pos_emb={pos_emb!r}")
    return pos_embed_cosine_similarity(pos, model.grid_size)


def neighbour_minus_far_similarity(similarity: Tensor) -> float:
    """How much the position embeddings encode 2-D topology (Fig. 7 centre), as one number: the
    mean cosine similarity of 4-neighbour patch pairs minus that of pairs at least half the
    grid's largest distance apart. Positive when nearby patches have more similar embeddings."""
    gh, gw = similarity.shape[:2]
    flat = similarity.reshape(gh * gw, gh * gw)
    rows, cols = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    coords = torch.stack([rows.flatten(), cols.flatten()], dim=1).float()  # (N, 2)
    dist = torch.cdist(coords, coords)  # (N, N) in patches
    return (flat[dist == 1].mean() - flat[dist >= dist.max() / 2].mean()).item()
