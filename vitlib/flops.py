"""Cost accounting (Fig. 5 puts every result on a compute axis): FLOPs counted by running the
model under `torch.utils.flop_counter.FlopCounterMode`, not from a hand formula."""
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode


def count_flops(model, img_size, in_chans=None):
    """Forward FLOPs per image (one multiply-add = 2 FLOPs) at `img_size` x `img_size`.

    Counts matrix products, convolutions and attention (the operations that dominate); training
    costs about 3x this per image (forward + backward)."""
    if in_chans is None:  # the input channels of the first convolution (every model here has one)
        first_conv = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
        in_chans = first_conv.in_channels if first_conv is not None else 3
    param = next(model.parameters())
    x = torch.zeros(1, in_chans, img_size, img_size, device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    try:
        # the reference attention kernel is made of matrix products the counter sees on any device
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def count_params(model, trainable_only=False):
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
