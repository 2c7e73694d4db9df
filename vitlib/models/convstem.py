"""A small convolutional stem in place of the ViT's linear patch embedding (Xiao et al. 2021,
"Early Convolutions Help Transformers See Better", arXiv:2106.14881): stride-2 3x3
conv-BatchNorm-ReLU layers, then the ViT's own projection to D as a 1x1 "patch" (PatchEmbed with
patch_size 1, the hybrid path of §3.1). Two such layers cut a 32-px image into the same 8 x 8 grid
as 4 x 4 patches. Xiao et al. find that it makes ViTs train faster and less sensitive to the
optimiser's settings, which is what a ViT trained from scratch for a few epochs needs; the paper's
ViT is the linear embedding, so runs name which one they used.
"""
import torch.nn as nn


class ConvStem(nn.Module):
    """Image (B, C, H, W) -> (B, widths[-1], H / 2^k, W / 2^k) for k = len(widths) layers."""

    def __init__(self, in_chans=3, widths=(48, 96)):
        super().__init__()
        widths = tuple(widths)
        if not widths or any(not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(f"widths must be a non-empty list of positive integers, got {widths!r}")
        layers, c = [], in_chans
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            c = w
        self.layers = nn.Sequential(*layers)
        self.out_channels, self.reduction = widths[-1], 2 ** len(widths)

    def forward(self, x):  # (B, C, H, W) -> (B, out_channels, H / reduction, W / reduction)
        return self.layers(x)
