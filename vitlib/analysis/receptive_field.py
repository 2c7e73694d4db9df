"""Effective receptive field of a CNN (Luo et al. 2016), the CNN side of the inductive-bias
comparison with a ViT's mean attention distance (§3.1, §4.5).

For each stage, the central output unit (the sum over channels at the centre spatial position,
index (h // 2, w // 2)) is differentiated w.r.t. the input; |gradient| summed over input channels
and averaged over images gives a (H, W) map of how much each input pixel moves that unit. Its
size is summarised as a radius in pixels: the smallest r such that the pixels within Euclidean
distance r of the map's centre of mass hold at least `fraction` of the total mass (default 0.9).
The centre of mass, rather than a fixed pixel, is used because for even input sizes and strided
stages the centre unit does not sit on one input pixel.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

StagesFn = Callable[[Tensor], list[Tensor]]


def sequential_stages(model: nn.Sequential) -> StagesFn:
    """Stages of a plain nn.Sequential: the output after each child module."""
    def stages(x: Tensor) -> list[Tensor]:
        outs = []
        for layer in model:
            x = layer(x)
            outs.append(x)
        return outs
    return stages


def mass_radius(grad_map: Tensor, fraction: float = 0.9) -> float:
    """Smallest Euclidean radius (pixels) around the centre of mass of a non-negative (H, W) map
    that holds at least `fraction` of its total mass."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if grad_map.ndim != 2 or (grad_map < 0).any():
        raise ValueError(f"grad_map must be a non-negative (H, W) map, got {tuple(grad_map.shape)}")
    mass = grad_map.detach().to("cpu", torch.float64)
    total = mass.sum()
    if total <= 0:
        raise ValueError("grad_map has no mass: the centre unit does not depend on the input")
    rows, cols = torch.meshgrid(torch.arange(mass.shape[0], dtype=torch.float64),
                                torch.arange(mass.shape[1], dtype=torch.float64), indexing="ij")
    cy, cx = (mass * rows).sum() / total, (mass * cols).sum() / total
    dist = torch.sqrt((rows - cy) ** 2 + (cols - cx) ** 2).flatten()  # (H*W,)
    order = torch.argsort(dist)
    cum = torch.cumsum(mass.flatten()[order], 0) / total
    first = int(torch.searchsorted(cum, torch.tensor([fraction], dtype=torch.float64)))
    return float(dist[order][min(first, len(dist) - 1)])


def effective_receptive_field_maps(model: nn.Module, images: Tensor,
                                   stages_fn: StagesFn | None = None,
                                   batch_size: int = 32) -> list[Tensor]:
    """Per stage, the (H, W) mean over images of |d centre unit / d input| summed over channels.

    `stages_fn(x) -> list of (B, C_i, H_i, W_i)` defaults to `model.forward_stages`, or to the
    output of each child for an nn.Sequential. Pass random images (torch.randn) for the ERF of
    the architecture, real ones for the trained network's. Runs in eval mode (BatchNorm uses its
    running statistics, so images do not interact); the model's mode is restored afterwards.
    """
    if images.ndim != 4 or not images.is_floating_point() or images.shape[0] == 0:
        raise ValueError(f"images must be float (N, C, H, W) with N >= 1, got {images.dtype} "
                         f"{tuple(images.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if stages_fn is None:
        if hasattr(model, "forward_stages"):
            stages_fn = model.forward_stages
        elif isinstance(model, nn.Sequential):
            stages_fn = sequential_stages(model)
        else:
            raise ValueError(f"{type(model).__name__} has no forward_stages and is not an "
                             "nn.Sequential: pass stages_fn")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    maps = None
    try:
        with torch.enable_grad():
            for start in range(0, images.shape[0], batch_size):
                x = images[start:start + batch_size].to(device).detach().requires_grad_(True)
                stages = stages_fn(x)
                batch_maps = []
                for i, feat in enumerate(stages):  # feat: (B, C_i, H_i, W_i)
                    centre = feat[:, :, feat.shape[-2] // 2, feat.shape[-1] // 2].sum()
                    (grad,) = torch.autograd.grad(centre, x, retain_graph=i < len(stages) - 1)
                    batch_maps.append(grad.abs().sum(dim=(0, 1)).double().cpu())  # (H, W)
                maps = batch_maps if maps is None else [m + b for m, b in zip(maps, batch_maps)]
    finally:
        model.train(was_training)
    return [m / images.shape[0] for m in maps]


def effective_receptive_field(model: nn.Module, images: Tensor, fraction: float = 0.9,
                              stages_fn: StagesFn | None = None,
                              batch_size: int = 32) -> list[float]:
    """ERF radius in pixels per stage (see the module docstring for the definition)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    maps = effective_receptive_field_maps(model, images, stages_fn, batch_size)
    return [mass_radius(m, fraction) for m in maps]
