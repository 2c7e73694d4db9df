"""Batched augmentation: crop/flip geometry by content, Mixup/CutMix bookkeeping, determinism."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from vitlib.data import AugmentConfig, augment_batch, normalize
from vitlib.data.augment import mix_batch, random_hflip, random_pad_crop, random_resized_crop
from vitlib.data.randaugment import GEOMETRIC_OPS, _affine, _color_op, _warp, rand_augment


def gen(seed=0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def unique_images(B=16, C=3, H=8, W=8) -> torch.Tensor:
    """Every pixel value distinct, so a crop's source offset can be read off its content."""
    return torch.arange(B * C * H * W, dtype=torch.float32).view(B, C, H, W) + 1


@pytest.mark.parametrize("kwargs, message", [
    (dict(crop="center"), r"crop='center'; allowed: \('none', 'pad_crop', 'random_resized_crop'\)"),
    (dict(padding_mode="edge"), "padding_mode='edge'"),
    (dict(rrc_scale=(0.5, 0.2)), "rrc_scale"),
    (dict(randaugment_magnitude=11), "randaugment_magnitude=11; allowed 0..10"),
    (dict(randaugment_ops=-1), "randaugment_ops=-1"),
    (dict(mixup_alpha=-0.1), "mixup_alpha=-0.1"),
    (dict(mix_prob=1.5), "mix_prob=1.5"),
])
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AugmentConfig(**kwargs)


def test_config_from_json_lists_is_hashable():
    config = AugmentConfig(crop="random_resized_crop", rrc_scale=[0.5, 1.0])
    assert config.rrc_scale == (0.5, 1.0) and hash(config) == hash(dataclasses.replace(config))
    assert not config.mixes and AugmentConfig(cutmix_alpha=1.0).mixes


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_pad_crop_is_a_shifted_copy_within_bounds(mode):
    x, p = unique_images(B=64), 3
    out = random_pad_crop(x, p, gen(1), mode)
    padded = F.pad(x, (p, p, p, p), mode="constant" if mode == "zeros" else "reflect")
    offsets = set()
    for i in range(len(x)):
        matches = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                   if torch.equal(out[i], padded[i, :, dy:dy + 8, dx:dx + 8])]
        assert len(matches) == 1, f"image {i} is not a crop of its padded self"
        offsets.add(matches[0])
    assert len(offsets) > 20  # per-image offsets, not one for the whole batch
    assert torch.equal(random_pad_crop(x, p, gen(1), mode), out)


def test_pad_crop_works_on_uint8():
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    out = random_pad_crop(x, 2, gen(0), "reflect")
    assert out.dtype == torch.uint8
    assert torch.equal(out.float(), random_pad_crop(x.float(), 2, gen(0), "reflect"))


def test_flip_rate_and_content():
    x = unique_images(B=4000, C=1, H=1, W=2)
    out = random_hflip(x, gen(2))
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    assert ((out == x).flatten(1).all(1) | flipped).all()
    assert abs(flipped.float().mean().item() - 0.5) < 0.03


def test_random_resized_crop_geometry():
    ramp = torch.arange(32, dtype=torch.float32).expand(6, 1, 32, 32).contiguous()  # value = column
    assert torch.allclose(random_resized_crop(ramp, (1.0, 1.0), (1.0, 1.0), gen(0)), ramp, atol=1e-4)
    # A box a quarter of the area and square is half as wide: the ramp's slope halves.
    out = random_resized_crop(ramp, (0.25, 0.25), (1.0, 1.0), gen(0))
    slope = out[..., 1:-1].diff(dim=-1)
    assert torch.allclose(slope, torch.full_like(slope, 0.5), atol=1e-3)
    starts = out[:, 0, 0, 1]
    assert starts.min() >= 0 and out.max() <= 31 and len(set(starts.round().tolist())) > 1


def test_mixup_and_cutmix_targets_match_pixel_share():
    B = 64
    labels = torch.arange(B)
    value = torch.linspace(0, 1, B)  # image i is constant = value[i]
    x = value.view(B, 1, 1, 1).expand(B, 3, 8, 8).contiguous()
    for mixup, cutmix in [(0.8, 0.0), (0.0, 1.0), (0.4, 1.0)]:
        out, targets = mix_batch(x, labels, B, mixup, cutmix, 1.0, gen(3))
        assert targets.shape == (B, B) and torch.allclose(targets.sum(1), torch.ones(B))
        # Mean pixel = the target-weighted mean of the sources: the label weight is the pixel share.
        assert torch.allclose(out.mean((1, 2, 3)), targets @ value, atol=1e-5)
        if mixup == 0:  # CutMix pastes pixels: every pixel comes from one of the two images
            partner = targets.clone()
            partner[labels, labels] = 0
            source = partner.argmax(1)
            assert ((out == value[:, None, None, None]) | (out == value[source][:, None, None, None])).all()
    out, targets = mix_batch(x, labels, B, 0.8, 1.0, 0.0, gen(3))  # mix_prob 0: untouched
    assert torch.equal(out, x) and torch.equal(targets, torch.eye(B))


def test_randaugment_keeps_dtype_shape_range():
    x = torch.rand(32, 3, 12, 12, generator=gen(4))
    out = rand_augment(x, 3, 9, gen(5))
    assert out.shape == x.shape and out.dtype == x.dtype and out.min() >= 0 and out.max() <= 1
    changed = (out - x).abs().flatten(1).amax(1) > 1e-6
    assert changed.float().mean() > 0.8  # only images that drew identity three times stay put
    as_bytes = rand_augment((x * 255).round().to(torch.uint8), 3, 9, gen(5))
    assert as_bytes.dtype == torch.uint8 and as_bytes.shape == x.shape
    grey = rand_augment(x[:, :1], 2, 9, gen(5))
    assert grey.shape == (32, 1, 12, 12)


def test_randaugment_ops_analytic():
    x = torch.rand(2, 3, 10, 20, generator=gen(6))
    factor = torch.tensor([0.5, 1.5]).view(2, 1, 1, 1)
    assert torch.allclose(_color_op("brightness", x, factor, 0.9), x * factor)
    posterized = _color_op("posterize", x, factor, 1.0) * 255  # 4 bits kept: multiples of 16
    assert torch.allclose(posterized, (posterized / 16).round() * 16, atol=1e-3)
    assert torch.equal(_color_op("solarize", x, factor, 0.0), x)  # threshold 256: nothing inverted
    assert torch.allclose(_color_op("solarize", x, factor, 1.0), 1 - x)
    stretched = _color_op("autocontrast", x * 0.5 + 0.2, factor, 0.9)
    assert torch.allclose(stretched.amin((2, 3)), torch.zeros(2, 3), atol=1e-6)
    # translate_x at full strength moves 45 % of the width: 9 px of 20, filling with grey.
    kind = torch.tensor([GEOMETRIC_OPS.index("translate_x")] * 2)
    shifted = _warp(x, _affine(kind, torch.tensor([1.0, 1.0]), (10, 20)))
    assert torch.allclose(shifted[..., :11], x[..., 9:], atol=1e-5)
    assert torch.allclose(shifted[..., 11:], torch.full_like(shifted[..., 11:], 0.5), atol=1e-5)
    rotate = torch.tensor([GEOMETRIC_OPS.index("rotate")])
    turned = _warp(x[:1, :, :, :10], _affine(rotate, torch.tensor([3.0]), (10, 10)))  # 3 x 30 degrees
    assert torch.allclose(turned, x[:1, :, :, :10].rot90(1, (2, 3)), atol=1e-4) or \
        torch.allclose(turned, x[:1, :, :, :10].rot90(-1, (2, 3)), atol=1e-4)


FULL = AugmentConfig(crop="pad_crop", flip=True, randaugment_ops=2, mixup_alpha=0.8, cutmix_alpha=1.0)


def test_pipeline_is_deterministic_and_data_independent():
    x = torch.randint(0, 200, (16, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(16) % 10
    a = augment_batch(x, labels, FULL, gen(7), 10)
    b = augment_batch(x, labels, FULL, gen(7), 10)
    c = augment_batch(x, labels, FULL, gen(8), 10)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])
    # The random choices depend on the seed only, not on the pixels: crop + flip commute with
    # adding a constant, and the generator ends in the same state.
    geometric = AugmentConfig(crop="pad_crop", flip=True)
    g1, g2 = gen(9), gen(9)
    shifted = augment_batch(x + 50, labels, geometric, g1, 10)[0]
    plain = augment_batch(x, labels, geometric, g2, 10)[0]
    assert torch.allclose(shifted, plain + 50 / 255)
    assert torch.equal(g1.get_state(), g2.get_state())


def test_no_augmentation_and_normalize():
    x = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    out, y = augment_batch(x, torch.zeros(4, dtype=torch.long), AugmentConfig(), gen(0), 10)
    assert torch.equal(out, x.float() / 255) and y.dtype == torch.long
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    expected = (out - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(normalize(out, mean, std), expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(64) % 10
    for config in (AugmentConfig(crop="pad_crop", flip=True, mixup_alpha=0.8, cutmix_alpha=1.0),
                   AugmentConfig(crop="random_resized_crop", flip=True), FULL):
        cpu = augment_batch(x, labels, config, gen(11), 10)
        gpu = augment_batch(x.cuda(), labels.cuda(), config, gen(11), 10)
        assert gpu[0].is_cuda
        assert (gpu[0].cpu() - cpu[0]).abs().mean() < 1e-4, config
        assert torch.allclose(gpu[1].cpu().float(), cpu[1].float(), atol=1e-6)
