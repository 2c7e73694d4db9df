"""Figures for the analysis notebook (paper Fig. 6 and Fig. 7, plus the CNN-vs-ViT locality plot).

Every function returns a `matplotlib.figure.Figure` built without pyplot, so nothing is shown or
kept in pyplot's global state: a notebook displays the returned figure once (as a cell's value or
with `display(fig)`), scripts call `fig.savefig(path)`. Axes carry their units.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor


def _as_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def _chw_to_display(img: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(C, H, W) in [0, 1] -> what imshow wants: RGB for 3 channels, grey otherwise (the channel
    mean, since a filter over C != 3 channels has no natural colour)."""
    if img.shape[0] == 3:
        return np.clip(img.transpose(1, 2, 0), 0, 1), None
    return img.mean(axis=0), "gray"


def plot_embedding_filters(filters, ncols: int = 7, variance=None) -> Figure:
    """Grid of principal components of the patch-embedding filters (Fig. 7 left).

    `filters` (k, C, P, P) in [0, 1] from `embedding_filters`; `variance` (k,) optional explained-
    variance ratios, shown in each title.
    """
    filters = _as_numpy(filters)
    if filters.ndim != 4 or ncols < 1:
        raise ValueError(f"filters must be (k, C, P, P) and ncols >= 1, got {filters.shape}, "
                         f"{ncols}")
    k, _, p, _ = filters.shape
    nrows = math.ceil(k / ncols)
    fig = Figure(figsize=(1.3 * ncols, 1.45 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= k:
            ax.set_visible(False)
            continue
        img, cmap = _chw_to_display(filters[i])
        ax.imshow(img, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        share = f" ({100 * float(_as_numpy(variance)[i]):.1f}%)" if variance is not None else ""
        ax.set_title(f"PC {i + 1}{share}", fontsize=7)
    fig.suptitle(f"Principal components of the patch-embedding filters ({p}x{p} px)")
    fig.supxlabel("filter column (pixels)")
    fig.supylabel("filter row (pixels)")
    return fig


def plot_pos_embed_similarity(sim) -> Figure:
    """The "grid of grids" of Fig. 7 (centre): tile (i, j) shows the cosine similarity of the
    position embedding of the patch at row i, column j with every patch."""
    sim = _as_numpy(sim)
    if sim.ndim != 4 or sim.shape[:2] != sim.shape[2:]:
        raise ValueError(f"sim must be (gh, gw, gh, gw), got {sim.shape}")
    gh, gw = sim.shape[:2]
    fig = Figure(figsize=(0.55 * gw + 1.6, 0.55 * gh + 0.8), layout="constrained")
    axes = fig.subplots(gh, gw, squeeze=False)
    image = None
    for i in range(gh):
        for j in range(gw):
            ax = axes[i, j]
            image = ax.imshow(sim[i, j], vmin=-1, vmax=1, cmap="viridis", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == gh - 1:
                ax.set_xlabel(str(j + 1), fontsize=7)
            if j == 0:
                ax.set_ylabel(str(i + 1), fontsize=7)
    fig.colorbar(image, ax=axes, shrink=0.8, label="Cosine similarity")
    fig.suptitle("Position embedding similarity")
    fig.supxlabel("Input patch column")
    fig.supylabel("Input patch row")
    return fig


def plot_attention_distance(dist, title: str | None = None, uniform: float | None = None) -> Figure:
    """Mean attention distance (pixels) of every head against layer index (Fig. 7 right);
    `dist` is (layers, heads) from `attention_distances`; `uniform`, the distance of a head that
    attends to every patch alike (`uniform_attention_distance`), is drawn as a dashed line."""
    dist = _as_numpy(dist)
    if dist.ndim != 2:
        raise ValueError(f"dist must be (layers, heads), got {dist.shape}")
    layers, heads = dist.shape
    fig = Figure(figsize=(5.5, 3.8), layout="constrained")
    ax = fig.subplots()
    depth = np.arange(1, layers + 1)
    for h in range(heads):
        ax.scatter(depth, dist[:, h], s=16, alpha=0.8, label=f"head {h + 1}")
    if uniform is not None:
        ax.axhline(uniform, color="0.4", linestyle="--", linewidth=1, label="uniform attention")
    ax.set_xlabel("network depth (layer)")
    ax.set_ylabel("mean attention distance (pixels)")
    ax.set_xticks(depth)
    top = max(float(dist.max()), uniform or 0.0)
    ax.set_ylim(0, top * 1.1 if top > 0 else 1)  # from 0: how far heads reach, not their spread
    if heads <= 16:
        ax.legend(fontsize=7, ncols=1, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax.set_title(title or "Attention distance per head")
    return fig


def _images_to_unit(images, mean=None, std=None) -> np.ndarray:
    """(B, C, H, W) uint8, float in [0, 1], or normalised float with mean/std -> float in [0, 1]."""
    images = images if isinstance(images, Tensor) else torch.as_tensor(np.asarray(images))
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
    x = images.detach().cpu()
    if x.dtype == torch.uint8:
        x = x.float() / 255
    elif mean is not None and std is not None:
        x = x.float() * torch.tensor(std).view(1, -1, 1, 1) + torch.tensor(mean).view(1, -1, 1, 1)
    return x.float().clamp(0, 1).numpy()


def plot_rollout(images, maps, mean=None, std=None) -> Figure:
    """Input images (top row) and their attention-rollout maps, bilinearly upsampled to the image
    size, overlaid (bottom row), as in Fig. 6. `images` are uint8, floats in [0, 1], or normalised
    floats with their per-channel `mean`/`std`; `maps` (B, gh, gw) in [0, 1] from `rollout_maps`."""
    imgs = _images_to_unit(images, mean, std)  # (B, C, H, W)
    maps = maps if isinstance(maps, Tensor) else torch.as_tensor(np.asarray(maps))
    if maps.ndim != 3 or maps.shape[0] != imgs.shape[0]:
        raise ValueError(f"maps must be (B, gh, gw) with B={imgs.shape[0]}, "
                         f"got {tuple(maps.shape)}")
    b, _, h, w = imgs.shape
    heat = F.interpolate(maps.detach().cpu().float()[:, None], size=(h, w), mode="bilinear",
                         align_corners=False)[:, 0].numpy()  # (B, H, W)
    fig = Figure(figsize=(1.8 * b + 0.8, 3.9), layout="constrained")
    axes = fig.subplots(2, b, squeeze=False)
    overlay = None
    for i in range(b):
        img, cmap = _chw_to_display(imgs[i])
        axes[0, i].imshow(img, cmap=cmap, vmin=0, vmax=1)
        axes[1, i].imshow(img, cmap=cmap, vmin=0, vmax=1)
        overlay = axes[1, i].imshow(heat[i], cmap="jet", alpha=0.5, vmin=0, vmax=1)
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("Input")
    axes[1, 0].set_ylabel("Attention rollout")
    fig.colorbar(overlay, ax=axes[1, :], shrink=0.9, label="Rollout weight (max = 1)")
    fig.supxlabel(f"{h}x{w} pixel images")
    return fig


def plot_head_maps(image, maps, layers=None, heads=None, mean=None, std=None) -> Figure:
    """One image and what each head reads in each layer: `maps` (layers, heads, gh, gw) from
    `head_maps` (one image's), shown over the image (bilinear upsampling), one row per layer of
    `layers` (default: all), one column per head of `heads` (default: all)."""
    img = _images_to_unit(image[None] if image.ndim == 3 else image, mean, std)[0]  # (C, H, W)
    maps = maps if isinstance(maps, Tensor) else torch.as_tensor(np.asarray(maps))
    if maps.ndim != 4:
        raise ValueError(f"maps must be (layers, heads, gh, gw), got {tuple(maps.shape)}")
    layers = list(range(maps.shape[0])) if layers is None else list(layers)
    heads = list(range(maps.shape[1])) if heads is None else list(heads)
    size = img.shape[-2:]
    up = F.interpolate(maps[layers][:, heads].float().flatten(0, 1)[:, None], size=size, mode="bilinear",
                       align_corners=False)[:, 0].reshape(len(layers), len(heads), *size)
    picture, cmap = _chw_to_display(img)
    fig = Figure(figsize=(1.6 * len(heads) + 0.8, 1.6 * len(layers) + 0.6), layout="constrained")
    axes = fig.subplots(len(layers), len(heads), squeeze=False)
    for i, layer in enumerate(layers):
        for j, head in enumerate(heads):
            ax = axes[i, j]
            ax.imshow(picture, cmap=cmap)
            ax.imshow(up[i, j].numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"head {head + 1}", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"layer {layer + 1}", fontsize=9)
    fig.suptitle("What each head attends to (1 = its most-attended patch)")
    return fig


def plot_inductive_bias(cnn_radii: dict[str, list[float]], vit_distances,
                        vit_label: str = "ViT") -> Figure:
    """How far each layer looks, CNN vs ViT, on one depth axis.

    Depth is normalised so networks of different length line up: stage i of n (and layer i of n)
    sits at i / n, i = 1..n. Lines: each CNN's effective-receptive-field radius per stage
    (`effective_receptive_field`); points: the ViT's mean attention distance of every head per
    layer (`attention_distances`, (layers, heads)). Both are in input pixels.
    """
    vit = _as_numpy(vit_distances)
    if vit.ndim != 2:
        raise ValueError(f"vit_distances must be (layers, heads), got {vit.shape}")
    fig = Figure(figsize=(6, 4.2), layout="constrained")
    ax = fig.subplots()
    for name, radii in cnn_radii.items():
        n = len(radii)
        ax.plot(np.arange(1, n + 1) / n, radii, "-s", label=f"{name}: ERF radius")
    layers, heads = vit.shape
    depth = np.repeat(np.arange(1, layers + 1) / layers, heads)
    ax.scatter(depth, vit.reshape(-1), s=12, alpha=0.6, color="k",
               label=f"{vit_label}: attention distance per head")
    ax.set_xlabel("Normalised depth (stage or layer index / count)")
    ax.set_ylabel("Distance in input space (pixels)")
    ax.set_xlim(0, 1.05)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    ax.set_title("CNN receptive field vs ViT attention distance")
    return fig
