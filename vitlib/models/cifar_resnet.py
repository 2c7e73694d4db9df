"""CIFAR ResNet-18 (He et al. 2016, arXiv:1512.03385), laid out as kuangliu/pytorch-cifar: 3x3/1
stem, no max-pool, BatchNorm basic blocks; 11,173,962 parameters for 10 classes. The fair CNN rival
of a ViT on 32 x 32 images."""
import torch.nn as nn
import torch.nn.functional as F

from vitlib.models.resnet import _check_positive, _check_stage_list, stage_outputs, zero_init


class BasicBlock(nn.Module):
    """He et al. (2016) basic block: conv3x3-BN-ReLU-conv3x3-BN, add shortcut, ReLU."""

    def __init__(self, in_ch, out_ch, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Sequential()  # identity unless the shape changes (option B projection)
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_ch))

    def forward(self, x):  # (B, C_in, H, W) -> (B, C_out, H / s, W / s)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """kuangliu/pytorch-cifar ResNet: 3x3/1 stem, stages with strides 1, 2, 2, ..., GAP, linear head.
    PyTorch default init for the body; the head starts at zero, as BiT's and as the ViT paper's
    fine-tuning heads (§3.2), so every classifier in vitlib starts from a constant output."""

    def __init__(self, blocks=(2, 2, 2, 2), widths=(64, 128, 256, 512), num_classes=10, in_chans=3):
        super().__init__()
        blocks = _check_stage_list("blocks", blocks)
        widths = _check_stage_list("widths", widths)
        if len(widths) != len(blocks):
            raise ValueError(f"widths must have one entry per stage ({len(blocks)}), got {widths!r}")
        _check_positive("num_classes", num_classes)
        _check_positive("in_chans", in_chans)
        self.stem = nn.Sequential(nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        in_ch, stages = widths[0], []
        for i, (depth, width) in enumerate(zip(blocks, widths)):
            first = BasicBlock(in_ch, width, stride=1 if i == 0 else 2)
            stages.append(nn.Sequential(first, *[BasicBlock(width, width) for _ in range(depth - 1)]))
            in_ch = width
        self.stages = nn.Sequential(*stages)
        self.num_features = widths[-1]
        self.reset_classifier(num_classes)

    def reset_classifier(self, num_classes):
        _check_positive("num_classes", num_classes)
        self.num_classes = num_classes
        self.head = zero_init(nn.Linear(self.num_features, num_classes)).to(self.stem[0].weight)

    def forward_stages(self, x):  # [(B, widths[i], H / 2^i, W / 2^i) for each stage i]
        return stage_outputs(self.stem, self.stages, x)

    def forward_features(self, x):  # (B, C, H, W) -> (B, widths[-1], H / 8, W / 8) for 4 stages
        return self.stages(self.stem(x))

    def forward_head(self, feat, pre_logits=False):
        x = feat.mean(dim=(2, 3))  # (B, C)
        return x if pre_logits else self.head(x)

    def forward(self, x):  # (B, C, H, W) -> (B, num_classes)
        return self.forward_head(self.forward_features(x))


def resnet18_cifar(num_classes=10, in_chans=3, **overrides):
    return CifarResNet(**{"blocks": (2, 2, 2, 2), "widths": (64, 128, 256, 512), **overrides},
                       num_classes=num_classes, in_chans=in_chans)


MODELS = {"resnet18_cifar": resnet18_cifar}
