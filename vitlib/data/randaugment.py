"""RandAugment (Cubuk et al. 2020), batched: each image draws its own ops, each op runs once on
the subset of the batch that drew it.

Per round, every image picks one op uniformly from `OPS` and a random sign; the magnitude m
(0..10) is shared, as in the paper. Strengths at m = 10 follow timm's `rand_augment_transform`:
enhance factors 1 +- 0.9, rotate +-30 deg, shear +-0.3, translate +-45 % of the side, posterize
down to 4 bits, solarize threshold down to 0. "sharpness" uses PIL's 3x3 smoothing kernel;
autocontrast stands in for equalize (a histogram equalisation does not batch cheaply).
Geometric ops fill uncovered pixels with mid grey (0.5), like timm's fill of 128.

Op choices are drawn on the CPU generator and grouped there, so selecting a subset costs no
device-to-host synchronisation; the index tensors go to the device once.
"""
import math

import torch
import torch.nn.functional as F

COLOR_OPS = ("identity", "brightness", "contrast", "color", "sharpness", "posterize", "solarize", "autocontrast")
GEOMETRIC_OPS = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
OPS = COLOR_OPS + GEOMETRIC_OPS
GREY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601, as PIL's convert("L")


def rand_augment(x: torch.Tensor, num_ops: int, magnitude: float, generator: torch.Generator) -> torch.Tensor:
    """Apply `num_ops` random ops per image. x: (B, C, H, W) float in [0, 1] (or uint8: kept uint8)."""
    if x.dtype == torch.uint8:
        return (rand_augment(x.float() / 255, num_ops, magnitude, generator) * 255).round_().to(torch.uint8)
    x = x.clone()
    B = x.shape[0]
    m = magnitude / 10
    for _ in range(num_ops):
        op = torch.randint(0, len(OPS), (B,), generator=generator)  # CPU
        sign = torch.where(torch.rand(B, generator=generator) < 0.5, -1.0, 1.0)
        for k, name in enumerate(COLOR_OPS[1:], start=1):
            chosen = (op == k).nonzero().squeeze(1)
            if len(chosen):
                index = chosen.to(x.device, non_blocking=True)
                factor = (1 + 0.9 * m * sign[chosen]).to(x.device, non_blocking=True)[:, None, None, None]
                x[index] = _color_op(name, x[index], factor, m).clamp_(0, 1)
        geometric = (op >= len(COLOR_OPS)).nonzero().squeeze(1)
        if len(geometric):
            theta = _affine(op[geometric] - len(COLOR_OPS), sign[geometric] * m, x.shape[-2:])
            index = geometric.to(x.device, non_blocking=True)
            x[index] = _warp(x[index], theta.to(x.device, non_blocking=True))
    return x


def _grey(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    # made on the CPU and sent without blocking: torch.tensor(..., device="cuda") is a blocking copy
    # that waits for all queued GPU work, once per op per batch
    weights = torch.tensor(GREY_WEIGHTS, dtype=x.dtype).to(x.device, non_blocking=True).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)  # (n, 1, H, W)


def _blend(base: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL ImageEnhance: factor 0 gives `base`, 1 gives x, above 1 extrapolates away from base."""
    return base + factor * (x - base)


def _color_op(name: str, x: torch.Tensor, factor: torch.Tensor, m: float) -> torch.Tensor:
    if name == "brightness":
        return x * factor
    if name == "contrast":
        return _blend(_grey(x).mean((1, 2, 3), keepdim=True), x, factor)
    if name == "color":
        return _blend(_grey(x), x, factor)
    if name == "sharpness":
        return _blend(_smooth(x), x, factor)
    if name == "posterize":
        step = 2 ** int(4 * m)  # keep 8 - int(4m) bits
        return (x * 255).round().div(step).floor().mul(step / 255)
    if name == "solarize":
        return torch.where(x * 255 >= 256 * (1 - m), 1 - x, x)  # PIL threshold 256 - 256 m: none at m = 0
    if name == "autocontrast":
        low, high = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
        span = high - low
        return torch.where(span > 0, (x - low) / span.clamp(min=1e-6), x)
    raise AssertionError(name)


def _smooth(x: torch.Tensor) -> torch.Tensor:
    """PIL's SMOOTH kernel [[1,1,1],[1,5,1],[1,1,1]] / 13 per channel; border pixels unchanged."""
    C = x.shape[1]
    kernel = torch.ones(3, 3, dtype=x.dtype, device=x.device)
    kernel[1, 1] = 5
    kernel = (kernel / 13).expand(C, 1, 3, 3)
    inner = F.conv2d(x, kernel, groups=C)  # (n, C, H - 2, W - 2)
    out = x.clone()
    out[:, :, 1:-1, 1:-1] = inner
    return out


def _affine(kind: torch.Tensor, strength: torch.Tensor, size) -> torch.Tensor:
    """(n, 2, 3) output->input maps in normalised coords for the geometric ops.

    `kind` indexes GEOMETRIC_OPS, `strength` = sign * m. Pixel-space maps are converted to
    normalised coords with the aspect ratio, so rotations stay rotations on non-square images.
    """
    H, W = size
    n = len(kind)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    angle = strength * math.radians(30)
    cos, sin = angle.cos(), angle.sin()
    rot = kind == 0
    theta[rot, 0, 0], theta[rot, 0, 1] = cos[rot], -sin[rot] * H / W
    theta[rot, 1, 0], theta[rot, 1, 1] = sin[rot] * W / H, cos[rot]
    shear = strength * 0.3
    theta[kind == 1, 0, 1] = shear[kind == 1] * H / W
    theta[kind == 2, 1, 0] = shear[kind == 2] * W / H
    shift = strength * 0.45 * 2  # 45 % of the side; normalised coords span 2
    theta[kind == 3, 0, 2] = shift[kind == 3]
    theta[kind == 4, 1, 2] = shift[kind == 4]
    return theta


def _warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    # Sample (x - 0.5) with zero padding, then add 0.5 back: uncovered pixels become mid grey.
    return F.grid_sample(x - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 0.5
