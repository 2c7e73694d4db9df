"""Tests for vitlib.models.resnet and cifar_resnet: timm equivalence, parameter counts, shapes,
gradients, errors."""
from functools import partial

import pytest
import torch
import torch.nn as nn

from vitlib.models.cifar_resnet import MODELS as CIFAR_MODELS
from vitlib.models.cifar_resnet import CifarResNet, resnet18_cifar
from vitlib.models.resnet import MODELS as BIT_MODELS
from vitlib.models.resnet import ResNetV2, StdConv2d, resnetv2_backbone

MODELS = {**BIT_MODELS, **CIFAR_MODELS}

timm = pytest.importorskip("timm")


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def randomise_norms(model, seed=0):
    """Non-trivial GN/BN affine parameters, so copying them is actually checked."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.GroupNorm, nn.BatchNorm2d)):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))


# ---- equivalence with timm -------------------------------------------------------------------

def test_bit_r50x1_matches_timm_logits():
    torch.manual_seed(0)
    ref = timm.create_model("resnetv2_50x1_bit", pretrained=False, num_classes=10).eval()
    randomise_norms(ref)
    with torch.no_grad():
        ref.head.fc.weight.normal_(0, 0.05)  # timm's head init is small; make the logits non-trivial
        ref.head.fc.bias.normal_(0, 0.05)
    ours = MODELS["bit_r50x1"](num_classes=10, in_chans=3).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref_feat, feat = ref.forward_features(x), ours.forward_features(x)
        expected, got = ref.forward_head(ref_feat), ours(x)
        pooled = ours.forward_head(feat, pre_logits=True)
    torch.testing.assert_close(feat, ref_feat, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pooled, ref.forward_head(ref_feat, pre_logits=True), atol=1e-5, rtol=1e-5)
    assert got.shape == (1, 10) and expected.abs().max() > 1e-2
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def _timm_hybrid_backbone():
    from timm.layers import StdConv2dSame
    from timm.models.resnetv2 import ResNetV2 as TimmResNetV2
    # Exactly what timm's vision_transformer_hybrid._resnetv2((3, 4, 9)) builds for vit_base_r50_s16_224.
    return TimmResNetV2(layers=(3, 4, 9), num_classes=0, global_pool="", preact=False, stem_type="same",
                        conv_layer=partial(StdConv2dSame, eps=1e-8))


def test_hybrid_backbone_matches_timm_outputs():
    torch.manual_seed(0)
    ref = _timm_hybrid_backbone().eval()
    randomise_norms(ref)
    ours = resnetv2_backbone(layers=(3, 4, 9), stem="same").eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    assert (ours.out_channels, ours.reduction) == (1024, 16)
    for size in (48, 33):  # even: 'SAME' pads bottom/right only; odd: symmetric
        x = torch.randn(1, 3, size, size)
        with torch.no_grad():
            expected, got = ref.forward_features(x), ours(x)
        assert got.shape == (1, 1024, -(-size // 16), -(-size // 16))
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_hybrid_backbone_param_count_equals_timm_vit_base_r50_s16_224():
    with torch.device("meta"):
        hybrid = timm.create_model("vit_base_r50_s16_224", pretrained=False)
        expected = n_params(hybrid.patch_embed.backbone)
        for stem in ("bit", "same"):
            assert n_params(resnetv2_backbone(layers=(3, 4, 9), stem=stem)) == expected


@pytest.mark.parametrize("ours,theirs", [("bit_r50x1", "resnetv2_50x1_bit"),
                                         ("bit_r101x1", "resnetv2_101x1_bit"),
                                         ("bit_r152x2", "resnetv2_152x2_bit")])
def test_bit_param_counts_equal_timm(ours, theirs):
    with torch.device("meta"):  # counts only: no memory, no init cost
        model = MODELS[ours](num_classes=1000, in_chans=3)
        ref = timm.create_model(theirs, pretrained=False, num_classes=1000)
    assert n_params(model) == n_params(ref)
    assert {k: v.shape for k, v in model.state_dict().items()} == \
           {k: v.shape for k, v in ref.state_dict().items()}


def test_resnet18_cifar_param_count_equals_kuangliu():
    with torch.device("meta"):
        assert n_params(resnet18_cifar(num_classes=10)) == 11_173_962


# ---- building blocks --------------------------------------------------------------------------

def test_stdconv_standardises_each_filter_and_same_padding_sizes():
    conv = StdConv2d(3, 4, 3, stride=2, same=True)
    with torch.no_grad():
        conv.weight.mul_(7).add_(3)  # standardisation must undo any affine change of the filters
    x = torch.randn(1, 3, 8, 8)
    ref = StdConv2d(3, 4, 3, stride=2, same=True)
    ref.weight.data = (conv.weight.data - 3) / 7
    torch.testing.assert_close(conv(x), ref(x), atol=1e-5, rtol=1e-5)
    for size in (7, 8):  # TF 'SAME': output is ceil(in / stride)
        assert conv(torch.randn(1, 3, size, size)).shape[-1] == 4


# ---- forward / backward of every named model ---------------------------------------------------

@pytest.mark.parametrize("name", ["resnet18_cifar", "bit_r50x1", "bit_r101x1"])
def test_forward_backward(name):
    torch.manual_seed(0)
    model = MODELS[name](num_classes=7, in_chans=3)
    head = model.head.fc if isinstance(model, ResNetV2) else model.head
    with torch.no_grad():  # a non-zero head, so that the gradient reaches the stem
        head.weight.normal_(0, 0.1)
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 5])
    logits = model(x)
    assert logits.shape == (2, 7)
    nn.functional.cross_entropy(logits, y).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.stem[0].weight.grad.abs().sum() > 0 and head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("build", [lambda: CifarResNet(widths=(8, 16, 32, 64), num_classes=3),
                                   lambda: ResNetV2((1, 1), num_classes=3, stem="cifar")])
def test_zero_head_gives_zero_logits_and_trains_only_the_head_first(build):
    model = build()
    x = torch.randn(2, 3, 16, 16)
    logits = model(x)
    assert torch.count_nonzero(logits) == 0
    nn.functional.cross_entropy(logits, torch.tensor([0, 2])).backward()
    head = model.head.fc if isinstance(model, ResNetV2) else model.head
    assert head.weight.grad.abs().sum() > 0 and torch.count_nonzero(model.stem[0].weight.grad) == 0


def test_bit_r152x2_forward_tiny():
    model = MODELS["bit_r152x2"](num_classes=3, in_chans=3).eval()
    assert model.num_features == 4096
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 32))
    assert out.shape == (1, 3) and torch.isfinite(out).all()


# ---- API: stages, head, reset, overrides -------------------------------------------------------

def test_bit_forward_stages_and_head_api():
    model = MODELS["bit_r50x1"](num_classes=5, in_chans=1).eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        maps = model.forward_stages(x)
        feat = model.forward_features(x)
        pooled = model.forward_head(feat, pre_logits=True)
        logits = model(x)
    assert [m.shape for m in maps] == [(1, 256, 16, 16), (1, 512, 8, 8), (1, 1024, 4, 4), (1, 2048, 2, 2)]
    torch.testing.assert_close(feat, model.norm(maps[-1]))
    assert pooled.shape == (1, 2048) and model.num_features == 2048 and model.num_classes == 5
    torch.testing.assert_close(pooled, feat.mean(dim=(2, 3)))
    assert logits.shape == (1, 5)


def test_cifar_resnet_narrow_stages_and_reset_classifier():
    model = CifarResNet(widths=(16, 32, 64, 128), num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        maps = model.forward_stages(x)
        feat = model.forward_features(x)
    assert [m.shape for m in maps] == [(2, 16, 32, 32), (2, 32, 16, 16), (2, 64, 8, 8), (2, 128, 4, 4)]
    torch.testing.assert_close(feat, maps[-1])
    assert model.forward_head(feat, pre_logits=True).shape == (2, 128) and model.num_features == 128
    with torch.no_grad():
        model.head.weight.fill_(1.0)
    model.reset_classifier(4)
    assert model.num_classes == 4 and model(x).shape == (2, 4)
    assert torch.count_nonzero(model.head.weight) == 0 and torch.count_nonzero(model.head.bias) == 0

    bit = ResNetV2((1, 1), num_classes=3, stem="cifar")
    bit.reset_classifier(6)
    assert bit.num_classes == 6 and bit.head.fc.weight.shape == (6, 512, 1, 1)
    assert torch.count_nonzero(bit.head.fc.weight) == 0


def test_cifar_stem_backbone_gives_8x8_from_32px():
    backbone = resnetv2_backbone(layers=(2, 2), width_factor=1, stem="cifar")
    assert (backbone.out_channels, backbone.reduction) == (512, 4)
    x = torch.randn(2, 3, 32, 32)
    out = backbone(x)
    assert out.shape == (2, 512, 8, 8)
    assert [m.shape for m in backbone.forward_stages(x)] == [(2, 256, 16, 16), (2, 512, 8, 8)]
    out.mean().backward()
    assert backbone.stem.conv.weight.grad.abs().sum() > 0


def test_builders_accept_overrides():
    model = MODELS["resnet18_cifar"](num_classes=100, in_chans=1, widths=(8, 16, 32, 64))
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 100)
    model = MODELS["bit_r50x1"](num_classes=2, in_chans=3, stem="cifar", layers=(1, 1))
    assert model(torch.randn(1, 3, 16, 16)).shape == (1, 2) and model.reduction == 4


# ---- argument validation -----------------------------------------------------------------------

@pytest.mark.parametrize("build,param", [
    (lambda: ResNetV2((3, 4, 6, 3), in_chans=0), "in_chans"),
    (lambda: ResNetV2((3, 4, 6, 3), num_classes=0), "num_classes"),
    (lambda: ResNetV2(()), "layers"),
    (lambda: ResNetV2((3, 0)), "layers"),
    (lambda: ResNetV2((1, 1, 1, 1, 1)), "layers"),
    (lambda: ResNetV2((3, 4), width_factor=0), "width_factor"),
    (lambda: ResNetV2((3, 4), stem="patchify"), "stem"),
    (lambda: resnetv2_backbone(layers=[]), "layers"),
    (lambda: CifarResNet(in_chans=0), "in_chans"),
    (lambda: CifarResNet(num_classes=-1), "num_classes"),
    (lambda: CifarResNet(blocks=()), "blocks"),
    (lambda: CifarResNet(blocks=(2, 2), widths=(16, 32, 64)), "widths"),
    (lambda: resnet18_cifar().reset_classifier(0), "num_classes"),
])
def test_bad_arguments_raise_value_error_naming_the_parameter(build, param):
    with pytest.raises(ValueError, match=param):
        build()
