"""What a trained ViT attends to: mean attention distance (§4.5, Fig. 7 right) and attention
rollout (Abnar & Zuidema 2020; App. D.8, Fig. 6).

The pure functions take attention probabilities (B, heads, T, T) as returned per layer by
`model(x, return_attention=True)`; the model-level helpers only use the attributes every vitlib
ViT has (`grid_size`, `num_prefix_tokens`, `forward(x, return_attention=True)`).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

HEAD_FUSIONS = ("mean", "max", "min")


def _pair(value, name: str) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        value = (value, value)
    if len(value) != 2 or any(v <= 0 for v in value):
        raise ValueError(f"{name} must be a positive number or a pair of them, got {value!r}")
    return float(value[0]), float(value[1])


def patch_distance_matrix(grid: tuple[int, int], patch_size) -> Tensor:
    """(gh*gw, gh*gw) Euclidean distance in pixels between patch centres, row-major patch order."""
    gh, gw = (int(g) for g in grid)
    if gh < 1 or gw < 1:
        raise ValueError(f"grid must be two positive ints, got {grid!r}")
    ph, pw = _pair(patch_size, "patch_size")
    rows, cols = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    centres = torch.stack([rows.flatten() * ph, cols.flatten() * pw], dim=1).double()  # (N, 2)
    return torch.cdist(centres, centres)  # (N, N)


def mean_attention_distance(attn: Tensor, grid: tuple[int, int], patch_size,
                            num_prefix_tokens: int = 1) -> Tensor:
    """Mean attention distance per head, in pixels (the paper's "attention distance", Fig. 7 right).

    For each query patch q: sum_k a_qk * d_qk over patch keys k, where d_qk is the Euclidean
    distance between the centres of patches q and k in pixels; then the mean over query patches
    and images. `attn` (B, heads, T, T) holds softmax probabilities with T = num_prefix_tokens +
    gh*gw and the prefix (class) tokens first.

    Prefix tokens are dropped from queries and keys WITHOUT renormalising the remaining weights:
    the class token has no position, so the attention it receives contributes nothing to the
    distance, exactly as in the common reimplementations of this metric (Raghu et al. 2021, "Do
    Vision Transformers See Like CNNs?", and the keras-io/probing-vits code that slices
    `attn[..., 1:, 1:]` before `sum(attn * dist, -1)`). A head that sends most of its mass to the
    class token therefore reads as "local"; renormalising would instead read it as whatever its
    small patch part does. `patch_size` may be a pair (ph, pw) for non-square patches; for hybrid
    models pass the pixel stride of one token (image size / grid size).

    Returns a float32 tensor (heads,) on attn's device.
    """
    if attn.ndim != 4 or attn.shape[-1] != attn.shape[-2]:
        raise ValueError(f"attn must be (B, heads, T, T), got shape {tuple(attn.shape)}")
    gh, gw = (int(g) for g in grid)
    if num_prefix_tokens < 0 or attn.shape[-1] != num_prefix_tokens + gh * gw:
        raise ValueError(f"attn has T={attn.shape[-1]} tokens but num_prefix_tokens="
                         f"{num_prefix_tokens} + grid {gh}x{gw} = {num_prefix_tokens + gh * gw}")
    dist = patch_distance_matrix((gh, gw), patch_size).to(attn.device, torch.float32)  # (N, N)
    p = num_prefix_tokens
    patch_attn = attn[:, :, p:, p:].float()  # (B, H, N, N), bf16/fp16 attention summed in fp32
    per_query = (patch_attn * dist).sum(-1)  # (B, H, N)
    return per_query.mean(dim=(0, 2))  # (H,)


def _fuse_heads(attn: Tensor, head_fusion: str) -> Tensor:
    if head_fusion == "mean":
        return attn.mean(dim=1)
    if head_fusion == "max":
        return attn.amax(dim=1)
    return attn.amin(dim=1)


def attention_rollout(attns: Sequence[Tensor], head_fusion: str = "mean") -> Tensor:
    """Attention rollout R = Â_L · … · Â_1 with Â = rows_normalised((fuse_heads(A) + I) / 2).

    `attns` is the per-layer list of (B, heads, T, T) probabilities, first layer first. Adding the
    identity accounts for the residual connection (Abnar & Zuidema 2020); re-normalising rows keeps
    each Â a stochastic matrix, which matters for "max"/"min" fusion. Returns (B, T, T) float32:
    row i is how much of token i's final representation flows from each input token.
    """
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")
    if len(attns) == 0:
        raise ValueError("attns must hold at least one layer's attention")
    shape = attns[0].shape
    if len(shape) != 4 or shape[-1] != shape[-2] or any(a.shape != shape for a in attns):
        raise ValueError("attns must be a list of equally shaped (B, heads, T, T) tensors, got "
                         f"{[tuple(a.shape) for a in attns]}")
    eye = torch.eye(shape[-1], device=attns[0].device)  # (T, T)
    rollout = None
    for attn in attns:
        fused = _fuse_heads(attn.float(), head_fusion)  # (B, T, T)
        a_hat = (fused + eye) / 2
        a_hat = a_hat / a_hat.sum(dim=-1, keepdim=True)
        rollout = a_hat if rollout is None else a_hat @ rollout  # later layers multiply on the left
    return rollout


def rollout_to_maps(rollout: Tensor, grid: tuple[int, int], num_prefix_tokens: int = 1) -> Tensor:
    """(B, T, T) rollout -> (B, gh, gw) heat maps in [0, 1].

    With a class token the map is its row restricted to patch tokens (what the head reads). A GAP
    model has no class token: the head reads the mean of the patch tokens, so the map is the mean
    of the patch-token rows. Each map is divided by its maximum (as in the reference rollout code),
    so 1 marks the most-attended patch and 0 keeps meaning "no flow".
    """
    gh, gw = (int(g) for g in grid)
    p = num_prefix_tokens
    if rollout.ndim != 3 or rollout.shape[-1] != p + gh * gw:
        raise ValueError(f"rollout must be (B, T, T) with T = {p} + {gh}*{gw}, got "
                         f"{tuple(rollout.shape)}")
    rows = rollout[:, 0, p:] if p > 0 else rollout[:, p:, p:].mean(dim=1)  # (B, N)
    maps = rows / rows.amax(dim=-1, keepdim=True).clamp_min(1e-12)
    return maps.reshape(-1, gh, gw)


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def collect_attentions(model: nn.Module, images: Tensor) -> list[Tensor]:
    """Per-layer attention (B, heads, T, T) of `model` on normalised float images, in eval mode
    (the model's train/eval mode is restored afterwards)."""
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"images must be normalised float (B, C, H, W), got {images.dtype} "
                         f"{tuple(images.shape)}")
    was_training = model.training
    model.eval()
    try:
        _, attns = model(images.to(_device_of(model)), return_attention=True)
    finally:
        model.train(was_training)
    return list(attns)


def attention_distances(model: nn.Module, images: Tensor, batch_size: int = 64) -> Tensor:
    """(layers, heads) mean attention distance in pixels of a ViT, averaged over `images`
    (normalised float (N, C, H, W)); the paper averages over 128 images.

    One token's pixel stride is image size / grid size, which equals patch_size for a plain ViT
    and also covers hybrids whose tokens come from a CNN feature map.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    gh, gw = model.grid_size
    stride = (images.shape[-2] / gh, images.shape[-1] / gw)
    total, count = None, 0
    for start in range(0, images.shape[0], batch_size):
        batch = images[start:start + batch_size]
        per_layer = [mean_attention_distance(a, (gh, gw), stride, model.num_prefix_tokens)
                     for a in collect_attentions(model, batch)]
        dist = torch.stack(per_layer).cpu() * batch.shape[0]  # (L, H), weighted by batch size
        total = dist if total is None else total + dist
        count += batch.shape[0]
    if count == 0:
        raise ValueError("images must hold at least one image")
    return total / count


def rollout_maps(model: nn.Module, images: Tensor, head_fusion: str = "mean") -> Tensor:
    """(B, gh, gw) attention-rollout maps in [0, 1] for normalised float images (Fig. 6)."""
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")
    rollout = attention_rollout(collect_attentions(model, images), head_fusion)
    return rollout_to_maps(rollout, model.grid_size, model.num_prefix_tokens).cpu()


def head_maps(model: nn.Module, images: Tensor) -> Tensor:
    """(layers, heads, B, gh, gw): what each head of each layer reads, as rollout_to_maps reads a
    rollout (the class token's attention row over the patches, or the mean patch row of a GAP
    model), each map scaled to [0, 1]. Fig. 6 rolls these out over the layers; this is each alone."""
    maps = [torch.stack([rollout_to_maps(a[:, h].float(), model.grid_size, model.num_prefix_tokens)
                         for h in range(a.shape[1])]) for a in collect_attentions(model, images)]
    return torch.stack(maps).cpu()


def uniform_attention_distance(image_size: int, patch_size: int) -> float:
    """Mean attention distance (pixels) of a head that attends uniformly to every patch: the mean
    distance between two patch centres of the image (the bar a "global" head approaches)."""
    grid = image_size // patch_size
    return float(patch_distance_matrix((grid, grid), patch_size).mean())
