"""Batched data augmentation on any device, reproducible from a CPU generator.

Every function takes a whole batch (B, C, H, W) and works on it with gathers, masks and
`grid_sample`, never a Python loop over images, so the same code runs the GPU-resident input path.
All random numbers are drawn on the CPU `generator` passed in and the small random tensors are
then moved to the batch's device: the result depends only on the generator's seed, not on the
device (the GPU and CPU paths agree up to float rounding in interpolation).

Order, as applied by `augment_batch`: crop -> flip -> RandAugment -> Mixup/CutMix; the caller
normalises last (`normalize`). Label smoothing belongs to the loss, not here.
"""
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vitlib.data.randaugment import rand_augment

CROPS = ("none", "pad_crop", "random_resized_crop")
PADDING_MODES = ("reflect", "zeros")


@dataclass(frozen=True)
class AugmentConfig:
    crop: str = "none"  # "none" | "pad_crop" (pad, then crop back at a random offset) | "random_resized_crop"
    padding: int = 4  # pixels added on each side for pad_crop
    padding_mode: str = "reflect"  # "reflect" | "zeros", for pad_crop
    rrc_scale: tuple[float, float] = (0.35, 1.0)  # crop area as a fraction of the image
    rrc_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # crop aspect ratio (w / h) range
    flip: bool = False  # horizontal flip with p = 0.5 per image
    randaugment_ops: int = 0  # ops per image (0 = off)
    randaugment_magnitude: float = 9.0  # 0..10, as in the RandAugment paper
    mixup_alpha: float = 0.0  # Beta(alpha, alpha) mixing weight; 0 = off
    cutmix_alpha: float = 0.0  # Beta(alpha, alpha) kept-area fraction; 0 = off
    mix_prob: float = 1.0  # probability that an image is mixed at all (when Mixup/CutMix is on)

    def __post_init__(self):
        # Accept lists (a config read back from JSON) but store tuples so the config stays hashable.
        for name in ("rrc_scale", "rrc_ratio"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        if self.crop not in CROPS:
            raise ValueError(f"crop={self.crop!r}; allowed: {CROPS}")
        if self.padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode={self.padding_mode!r}; allowed: {PADDING_MODES}")
        if not (isinstance(self.padding, int) and self.padding >= 0):
            raise ValueError(f"padding={self.padding!r}; must be an int >= 0")
        lo, hi = self.rrc_scale
        if len(self.rrc_scale) != 2 or not 0 < lo <= hi <= 1:
            raise ValueError(f"rrc_scale={self.rrc_scale}; need 0 < low <= high <= 1")
        lo, hi = self.rrc_ratio
        if len(self.rrc_ratio) != 2 or not 0 < lo <= hi:
            raise ValueError(f"rrc_ratio={self.rrc_ratio}; need 0 < low <= high")
        if not (isinstance(self.randaugment_ops, int) and self.randaugment_ops >= 0):
            raise ValueError(f"randaugment_ops={self.randaugment_ops!r}; must be an int >= 0")
        if not 0 <= self.randaugment_magnitude <= 10:
            raise ValueError(f"randaugment_magnitude={self.randaugment_magnitude}; allowed 0..10")
        for name in ("mixup_alpha", "cutmix_alpha"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)}; must be >= 0 (0 = off)")
        if not 0 <= self.mix_prob <= 1:
            raise ValueError(f"mix_prob={self.mix_prob}; allowed 0..1")

    @property
    def mixes(self) -> bool:
        """True when targets come out soft (B, K)."""
        return (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and self.mix_prob > 0


def augment_batch(images, labels, config: AugmentConfig, generator: torch.Generator, num_classes: int):
    """(B, C, H, W) uint8 or [0, 1] float -> ([0, 1] float32 batch, targets).

    targets: `labels` unchanged, or (B, num_classes) float soft targets when `config.mixes`.
    """
    x = to_float(images)
    if config.crop == "pad_crop":
        x = random_pad_crop(x, config.padding, generator, config.padding_mode)
    elif config.crop == "random_resized_crop":
        x = random_resized_crop(x, config.rrc_scale, config.rrc_ratio, generator)
    if config.flip:
        x = random_hflip(x, generator)
    if config.randaugment_ops:
        x = rand_augment(x, config.randaugment_ops, config.randaugment_magnitude, generator)
    if config.mixes:
        return mix_batch(x, labels, num_classes, config.mixup_alpha, config.cutmix_alpha,
                         config.mix_prob, generator)
    return x, labels


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float32 0..1; a float batch is assumed to be 0..1 already."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images.float()


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """(x - mean) / std per channel; mean/std in 0..1 units, as ImageDataset stores them. A uint8
    batch (0..255) is converted to 0..1 floats first."""
    if x.dtype == torch.uint8:
        x = to_float(x)
    # tuples are made on the CPU and sent without blocking: as_tensor(..., device="cuda") would be a
    # blocking copy that waits for all queued GPU work (BatchStream passes device tensors: no copy)
    mean = torch.as_tensor(mean, dtype=x.dtype).to(x.device, non_blocking=True).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=x.dtype).to(x.device, non_blocking=True).view(1, -1, 1, 1)
    return (x - mean) / std


def resize_images(images: torch.Tensor, size: int, chunk: int = 1024) -> torch.Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, C, size, size), bilinear with antialiasing, in chunks."""
    if images.shape[-2:] == (size, size):
        return images
    out = torch.empty((*images.shape[:2], size, size), dtype=torch.uint8, device=images.device)
    for start in range(0, len(images), chunk):
        part = images[start:start + chunk].float()
        part = F.interpolate(part, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start:start + chunk] = part.round_().clamp_(0, 255).to(torch.uint8)
    return out


def _device_tensor(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.to(like.device, non_blocking=True)


def random_pad_crop(x: torch.Tensor, padding: int, generator, mode: str = "reflect") -> torch.Tensor:
    """Pad each side by `padding` and crop back to (H, W) at a per-image random offset.

    Implemented as a gather on shifted (reflected or masked) indices, so no padded copy is made.
    """
    B, C, H, W = x.shape
    if mode == "reflect" and padding >= min(H, W):
        raise ValueError(f"padding={padding} must be smaller than the image side {min(H, W)} for reflect padding")
    offsets = torch.randint(0, 2 * padding + 1, (2, B), generator=generator) - padding
    offsets = _device_tensor(offsets, x)
    rows = offsets[0, :, None] + torch.arange(H, device=x.device)  # (B, H) source rows
    cols = offsets[1, :, None] + torch.arange(W, device=x.device)  # (B, W) source cols
    if mode == "reflect":  # torch's reflect padding: mirror without repeating the edge pixel
        rows, cols = _reflect(rows, H), _reflect(cols, W)
    else:
        valid = ((rows >= 0) & (rows < H))[:, None, :, None] & ((cols >= 0) & (cols < W))[:, None, None, :]
        rows, cols = rows.clamp(0, H - 1), cols.clamp(0, W - 1)
    out = x.gather(2, rows[:, None, :, None].expand(B, C, H, W))
    out = out.gather(3, cols[:, None, None, :].expand(B, C, H, W))
    return out if mode == "reflect" else out * valid


def _reflect(index: torch.Tensor, n: int) -> torch.Tensor:
    index = index.abs()
    return torch.where(index > n - 1, 2 * (n - 1) - index, index)


def random_resized_crop(x: torch.Tensor, scale, ratio, generator) -> torch.Tensor:
    """Crop a per-image random box (area fraction in `scale`, aspect in `ratio`), resize to (H, W)."""
    B, C, H, W = x.shape
    u = torch.rand(4, B, generator=generator, dtype=torch.float64)
    area = scale[0] + (scale[1] - scale[0]) * u[0]
    log_ratio = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[1]
    # Box width/height as fractions of the image; clamping keeps the box inside (torchvision
    # instead retries and falls back to a centre crop).
    w = (area * log_ratio.exp()).sqrt().clamp(max=1.0)
    h = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
    cx = w / 2 + (1 - w) * u[2]  # box centre, fraction of the width
    cy = h / 2 + (1 - h) * u[3]
    theta = torch.zeros(B, 2, 3, dtype=torch.float64)
    theta[:, 0, 0], theta[:, 0, 2] = w, 2 * cx - 1  # normalised coords: x_in = w * x_out + shift
    theta[:, 1, 1], theta[:, 1, 2] = h, 2 * cy - 1
    grid = F.affine_grid(_device_tensor(theta.float(), x), (B, C, H, W), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_hflip(x: torch.Tensor, generator, p: float = 0.5) -> torch.Tensor:
    flip = _device_tensor(torch.rand(x.shape[0], generator=generator) < p, x)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def _beta(alpha: float, n: int, generator) -> torch.Tensor:
    # torch's Beta sampler takes no generator; a numpy stream seeded from it keeps determinism.
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.from_numpy(np.random.default_rng(seed).beta(alpha, alpha, size=n)).float()


def mix_batch(x, labels, num_classes, mixup_alpha, cutmix_alpha, mix_prob, generator):
    """Per-image Mixup or CutMix with a random partner; returns (mixed x, soft targets (B, K)).

    Each image i is mixed with image perm[i] (unmixed). With both alphas on, each image picks
    Mixup or CutMix with p = 0.5. Targets weight the labels by the exact share of pixels: for
    CutMix the box area after clipping to the image, for Mixup the mixing weight.
    """
    B, _, H, W = x.shape
    perm = torch.randperm(B, generator=generator)
    mixed = torch.rand(B, generator=generator) < mix_prob
    if mixup_alpha > 0 and cutmix_alpha > 0:
        use_cutmix = torch.rand(B, generator=generator) < 0.5
    else:
        use_cutmix = torch.full((B,), cutmix_alpha > 0)
    lam_mix = _beta(mixup_alpha, B, generator) if mixup_alpha > 0 else torch.ones(B)
    lam_cut = _beta(cutmix_alpha, B, generator) if cutmix_alpha > 0 else torch.ones(B)
    # CutMix box: area (1 - lam) of the image, centred uniformly, then clipped (timm's recipe).
    cut = (1 - lam_cut).sqrt()
    half_h, half_w = (cut * H / 2).floor(), (cut * W / 2).floor()
    cy, cx = (torch.rand(2, B, generator=generator) * torch.tensor([[H], [W]])).floor()
    y0, y1 = (cy - half_h).clamp(0, H), (cy + half_h).clamp(0, H)
    x0, x1 = (cx - half_w).clamp(0, W), (cx + half_w).clamp(0, W)
    box_area = (y1 - y0) * (x1 - x0) / (H * W)
    use_cutmix &= mixed
    use_mixup = mixed & ~use_cutmix
    lam = torch.where(use_cutmix, 1 - box_area, torch.where(use_mixup, lam_mix, torch.ones(B)))

    dev = lambda t: _device_tensor(t, x)  # noqa: E731 - the few small tensors go over once
    perm_d, lam_d = dev(perm), dev(lam)
    rows = torch.arange(H, device=x.device)[None, :, None]  # (1, H, 1)
    cols = torch.arange(W, device=x.device)[None, None, :]  # (1, 1, W)
    box = ((rows >= dev(y0)[:, None, None]) & (rows < dev(y1)[:, None, None])
           & (cols >= dev(x0)[:, None, None]) & (cols < dev(x1)[:, None, None])
           & dev(use_cutmix)[:, None, None])  # (B, H, W)
    partner = x[perm_d]
    mix_weight = torch.where(dev(use_mixup), lam_d, torch.ones_like(lam_d))[:, None, None, None]
    out = torch.where(box[:, None], partner, x)
    out = mix_weight * out + (1 - mix_weight) * partner
    one_hot = F.one_hot(labels, num_classes).float()  # (B, K)
    targets = lam_d[:, None] * one_hot + (1 - lam_d[:, None]) * one_hot[perm_d]
    return out, targets
