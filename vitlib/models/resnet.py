"""The CNN rivals of the ViT paper: BiT ResNets (v2) and the hybrid's ResNet stem (the CIFAR
ResNet-18 is in `cifar_resnet.py`).

- BiT (Kolesnikov et al. 2020, "Big Transfer", arXiv:1912.11370), the ViT paper's CNN baselines:
  pre-activation bottleneck ResNet v2 (He et al. 2016, arXiv:1603.05027) with Group Normalization and
  Weight Standardisation (Qiao et al. 2019, arXiv:1903.10520). Parameter names equal timm's `ResNetV2`
  (`resnetv2_50x1_bit` ...), so a timm state dict loads with `load_state_dict(strict=True)`.
- The hybrid's backbone (ViT paper §3.1): R50 with stage 4 removed and stage 3 extended to 9 blocks,
  stride 16. Like the official JAX code (`vit_jax/models_resnet.py`) and timm's `vit_base_r50_s16_224`
  it uses *post*-activation bottlenecks (conv-GN-ReLU, GN on the projection, ReLU after the sum).
"""
import math
from collections import OrderedDict

import torch.nn as nn
import torch.nn.functional as F

STEMS = ("bit", "same", "cifar")
BIT_CHANNELS = (256, 512, 1024, 2048)  # stage output widths at width factor 1 (x4 bottleneck expansion)


def _check_positive(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def _check_stage_list(name, values, max_len=None):
    values = tuple(values) if isinstance(values, (list, tuple)) else values
    if not isinstance(values, tuple) or not values or (max_len and len(values) > max_len) \
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        limit = f" of at most {max_len}" if max_len else ""
        raise ValueError(f"{name} must be a non-empty sequence{limit} of ints >= 1, got {values!r}")
    return values


def pad_same(x, kernel_size, stride, value=0.0):
    """TF/JAX 'SAME' padding: output size ceil(in / stride); an odd extra pixel goes bottom/right."""
    ih, iw = x.shape[-2:]
    ph = max((math.ceil(ih / stride) - 1) * stride + kernel_size - ih, 0)
    pw = max((math.ceil(iw / stride) - 1) * stride + kernel_size - iw, 0)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=value)


def zero_init(layer):
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def stage_outputs(stem, stages, x):
    """Feature map after each stage, for the effective-receptive-field analysis."""
    maps, x = [], stem(x)
    for stage in stages:
        x = stage(x)
        maps.append(x)
    return maps


class StdConv2d(nn.Conv2d):
    """Conv with Weight Standardisation: each output filter is standardised to zero mean and unit
    (biased) variance before use, as timm's StdConv2d / StdConv2dSame with eps=1e-8 (BiT and hybrid).

    same=False pads symmetrically by k // 2 (PyTorch / BiT); same=True uses TF 'SAME' padding, which
    differs only for strided convs on even inputs (the JAX-trained hybrid checkpoints need it)."""

    def __init__(self, in_ch, out_ch, kernel_size, stride=1, same=False, eps=1e-8):
        self.dynamic_pad = same and stride > 1  # stride-1 odd kernels: SAME == symmetric k // 2
        padding = 0 if self.dynamic_pad else kernel_size // 2
        super().__init__(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=False)
        self.eps = eps

    def forward(self, x):
        # (w - mean) / sqrt(var + eps) per output filter, written as a batch norm over the flattened
        # filters (1, O, I*k*k): the kernel timm uses, so float32 outputs match it to rounding.
        w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None,
                         training=True, momentum=0.0, eps=self.eps).reshape_as(self.weight)
        if self.dynamic_pad:
            x = pad_same(x, self.kernel_size[0], self.stride[0])
        return F.conv2d(x, w, None, self.stride, self.padding)


class StemPool(nn.Module):
    """3x3/2 max-pool. BiT pads the map with a ring of zeros (timm's "fixed" stem); TF 'SAME' pads with
    -inf, bottom/right first. They differ on the pre-activation stem, whose input may be negative."""

    def __init__(self, same):
        super().__init__()
        self.same = same

    def forward(self, x):
        x = pad_same(x, 3, 2, float("-inf")) if self.same else F.pad(x, (1, 1, 1, 1), value=0.0)
        return F.max_pool2d(x, 3, 2)


class GroupNormAct(nn.GroupNorm):
    """GroupNorm with 32 groups (BiT), optionally followed by ReLU; same parameters as timm's."""

    def __init__(self, channels, act=True):
        super().__init__(32, channels, eps=1e-5)
        self.act = act

    def forward(self, x):
        x = super().forward(x)
        return F.relu(x) if self.act else x


def projection(in_ch, out_ch, stride, same, preact):
    """1x1 (strided) projection shortcut; post-activation blocks normalise it, pre-activation don't."""
    norm = nn.Identity() if preact else GroupNormAct(out_ch, act=False)
    return nn.Sequential(OrderedDict(conv=StdConv2d(in_ch, out_ch, 1, stride, same), norm=norm))


class PreActBottleneck(nn.Module):
    """BiT unit: (GN-ReLU-conv) x3 with 1x1, 3x3 (carries the stride), 1x1; the projection shortcut
    reads the pre-activated input, the identity shortcut the raw one."""

    def __init__(self, in_ch, out_ch, stride=1, same=False, project=False):
        super().__init__()
        mid = out_ch // 4
        self.downsample = projection(in_ch, out_ch, stride, same, preact=True) if project else None
        self.norm1, self.conv1 = GroupNormAct(in_ch), StdConv2d(in_ch, mid, 1)
        self.norm2, self.conv2 = GroupNormAct(mid), StdConv2d(mid, mid, 3, stride, same)
        self.norm3, self.conv3 = GroupNormAct(mid), StdConv2d(mid, out_ch, 1)

    def forward(self, x):  # (B, C_in, H, W) -> (B, C_out, H / s, W / s)
        x_preact = self.norm1(x)
        shortcut = self.downsample(x_preact) if self.downsample is not None else x
        x = self.conv1(x_preact)
        x = self.conv2(self.norm2(x))
        x = self.conv3(self.norm3(x))
        return x + shortcut


class Bottleneck(nn.Module):
    """Post-activation unit of the hybrid (vit_jax ResidualUnit): conv-GN-ReLU x2, conv-GN, add, ReLU.
    The last GN scale starts at zero as in vit_jax, so each unit starts as (ReLU of) its shortcut."""

    def __init__(self, in_ch, out_ch, stride=1, same=False, project=False):
        super().__init__()
        mid = out_ch // 4
        self.downsample = projection(in_ch, out_ch, stride, same, preact=False) if project else None
        self.conv1, self.norm1 = StdConv2d(in_ch, mid, 1), GroupNormAct(mid)
        self.conv2, self.norm2 = StdConv2d(mid, mid, 3, stride, same), GroupNormAct(mid)
        self.conv3, self.norm3 = StdConv2d(mid, out_ch, 1), GroupNormAct(out_ch, act=False)
        nn.init.zeros_(self.norm3.weight)

    def forward(self, x):  # (B, C_in, H, W) -> (B, C_out, H / s, W / s)
        shortcut = self.downsample(x) if self.downsample is not None else x
        x = self.norm1(self.conv1(x))
        x = self.norm2(self.conv2(x))
        x = self.norm3(self.conv3(x))
        return F.relu(x + shortcut)


class ResNetStage(nn.Module):
    """`depth` units; the first one projects the shortcut and carries the stage's stride."""

    def __init__(self, block, in_ch, out_ch, depth, stride, same):
        super().__init__()
        self.blocks = nn.Sequential(*[
            block(in_ch if i == 0 else out_ch, out_ch, stride if i == 0 else 1, same, project=i == 0)
            for i in range(depth)])

    def forward(self, x):
        return self.blocks(x)


class ResNetV2Backbone(nn.Module):
    """Stem + stages of a GN/WS ResNet: image (B, C, H, W) -> last stage map (B, out_channels, H/r, W/r).

    stem: "bit"   7x7/2 conv, max-pool 3x3/2 on a zero-padded map (timm's "fixed" BiT stem);
          "same"  the same with TF 'SAME' padding in every strided conv and the pool (vit_jax, timm hybrid);
          "cifar" 3x3/1 conv and no pool, for 32-px images.
    Strides: after the stride-4 ImageNet stems, stage 1 keeps the resolution and later stages halve it
    (BiT). After the stride-1 CIFAR stem every stage halves it, so layers=(2, 2) has reduction 4: the
    8x8 grid of a patch-4 ViT on 32-px images.
    """

    def __init__(self, layers, width_factor=1, in_chans=3, stem="bit", preact=True):
        super().__init__()
        layers = _check_stage_list("layers", layers, max_len=len(BIT_CHANNELS))
        _check_positive("width_factor", width_factor)
        _check_positive("in_chans", in_chans)
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
        same, stem_ch = stem == "same", 64 * width_factor
        parts = OrderedDict(conv=StdConv2d(in_chans, stem_ch, 3, 1) if stem == "cifar"
                            else StdConv2d(in_chans, stem_ch, 7, 2, same))
        if not preact:  # post-activation nets normalise the stem; pre-activation ones defer to block 1
            parts["norm"] = GroupNormAct(stem_ch)
        if stem != "cifar":
            parts["pool"] = StemPool(same)
        self.stem = nn.Sequential(parts)

        block = PreActBottleneck if preact else Bottleneck
        reduction = 1 if stem == "cifar" else 4
        in_ch, stages = stem_ch, []
        for i, depth in enumerate(layers):
            stride = 1 if i == 0 and stem != "cifar" else 2
            out_ch = BIT_CHANNELS[i] * width_factor
            stages.append(ResNetStage(block, in_ch, out_ch, depth, stride, same))
            in_ch, reduction = out_ch, reduction * stride
        self.stages = nn.Sequential(*stages)
        self.out_channels, self.reduction = in_ch, reduction

        for m in self.modules():  # timm's init; WS makes the conv weight scale irrelevant anyway
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_stages(self, x):
        """Raw output of every stage (for v2: before the final GN+ReLU), (B, C_i, H_i, W_i)."""
        return stage_outputs(self.stem, self.stages, x)

    def forward(self, x):  # (B, C, H, W) -> (B, out_channels, H / reduction, W / reduction)
        return self.stages(self.stem(x))


class ResNetV2(ResNetV2Backbone):
    """BiT ResNet-v2 classifier: pre-activation backbone, final GN+ReLU, average pool, zero-init head."""

    def __init__(self, layers, width_factor=1, num_classes=1000, in_chans=3, stem="bit"):
        _check_positive("num_classes", num_classes)
        super().__init__(layers, width_factor, in_chans, stem, preact=True)
        self.num_classes, self.num_features = num_classes, self.out_channels
        self.norm = GroupNormAct(self.num_features)  # pre-activation nets end un-normalised
        self.reset_classifier(num_classes)

    def reset_classifier(self, num_classes):
        """A zero head (BiT: fine-tuning starts from a constant output). It is a 1x1 conv named
        `head.fc`, as in BiT and timm, so their checkpoints load unchanged."""
        _check_positive("num_classes", num_classes)
        self.num_classes = num_classes
        self.head = nn.ModuleDict({"fc": zero_init(nn.Conv2d(self.num_features, num_classes, 1))})
        self.head.to(self.norm.weight)

    def forward_features(self, x):  # (B, C, H, W) -> (B, num_features, H / r, W / r)
        return self.norm(self.stages(self.stem(x)))

    def forward_head(self, feat, pre_logits=False):  # (B, C, H, W) -> (B, K), or (B, C) with pre_logits
        x = feat.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        return x.flatten(1) if pre_logits else self.head.fc(x).flatten(1)

    def forward(self, x):  # (B, C, H, W) -> (B, num_classes)
        return self.forward_head(self.forward_features(x))


def resnetv2_backbone(layers=(3, 4, 9), width_factor=1, in_chans=3, stem="bit", preact=False):
    """The hybrid's CNN stem. Defaults: the paper's R50 with stage 4 removed and stage 3 at 9 blocks
    (1024 channels, reduction 16), post-activation as vit_jax/timm; stem="same" reproduces timm's
    `vit_base_r50_s16_224` backbone exactly. layers=(2, 2), stem="cifar": 512 channels, reduction 4."""
    return ResNetV2Backbone(layers, width_factor, in_chans, stem, preact)


def _bit(layers, width_factor):
    def build(num_classes=1000, in_chans=3, **overrides):
        kwargs = {"layers": layers, "width_factor": width_factor, **overrides}
        return ResNetV2(num_classes=num_classes, in_chans=in_chans, **kwargs)
    return build


# BiT variants used as baselines in the ViT paper (Table 2 / Fig. 5): R50x1, R101x1, R152x2.
MODELS = {
    "bit_r50x1": _bit((3, 4, 6, 3), 1),
    "bit_r101x1": _bit((3, 4, 23, 3), 1),
    "bit_r152x2": _bit((3, 8, 36, 3), 2),
}
