"""Cost accounting (Fig. 5 puts every result on a compute axis): FLOPs counted by running the
model under `torch.utils.flop_counter.FlopCounterMode`, not from a hand formula."""
import contextlib

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode


def count_flops(model, img_size, in_chans=None, cut_repeats=False):
    """Forward FLOPs per image (one multiply-add = 2 FLOPs) at `img_size` x `img_size`.

    Counts matrix products, convolutions and attention (the operations that dominate); training
    costs about 3x this per image (forward + backward).

    cut_repeats: the same number, several times faster for deep models on the meta device, where
    every operation runs in Python (`vitlib list-models` counts ViT-H this way). Each stack of
    alike blocks (a container named `blocks`: a ViT's layers, a ResNet stage's units after the
    first) runs up to the first alike block, whose count is then added once per block cut off.
    Exact: a stack is cut only where its blocks are built alike (same layers, sizes, strides) and
    the counted one gives back its input's shape, so each block cut off would do the same work."""
    if in_chans is None:  # the input channels of the first convolution (every model here has one)
        first_conv = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
        in_chans = first_conv.in_channels if first_conv is not None else 3
    param = next(model.parameters())
    x = torch.zeros(1, in_chans, img_size, img_size, device=param.device, dtype=param.dtype)
    if cut_repeats:
        return _count_cut(model, x)
    return int(_run_counted(model, x).get_total_flops())


def _run_counted(model, x):
    """The FlopCounterMode that saw model(x) in eval mode (per-module counts: get_flop_counts())."""
    was_training = model.training
    model.eval()
    try:
        # the reference attention kernel is made of matrix products the counter sees on any device
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter


def _first_alike(blocks):
    """The index (0 or 1) from which every block of `blocks` is built alike, or None."""
    def alike(run):
        return len({(repr(b), tuple(p.shape for p in b.parameters())) for b in run}) == 1
    return 0 if alike(blocks) else 1 if alike(blocks[1:]) else None


def _count_cut(model, x):
    """count_flops(..., cut_repeats=True): see there."""
    stacks = {}  # name: (the stack, the index of the block counted for those cut off)
    for name, module in model.named_modules():
        if (name.rpartition(".")[2] == "blocks" and isinstance(module, (nn.Sequential, nn.ModuleList))
                and not any(name.startswith(outer + ".") for outer in stacks)):  # a stack in a block runs whole
            first = _first_alike(module)
            if first is not None and len(module) > first + 1:
                stacks[name] = (module, first)
    shapes = {}  # name: (input shape, output shape) of the counted block

    def watch(name):
        def hook(module, args, output):
            shapes[name] = (args[0].shape, (output[0] if isinstance(output, tuple) else output).shape)
        return hook

    hooks = [stack[first].register_forward_hook(watch(name)) for name, (stack, first) in stacks.items()]
    try:
        for name, (stack, first) in stacks.items():
            parent, _, attribute = name.rpartition(".")
            setattr(model.get_submodule(parent), attribute, stack[:first + 1])
        counter = _run_counted(model, x)
    finally:
        for name, (stack, _) in stacks.items():
            parent, _, attribute = name.rpartition(".")
            setattr(model.get_submodule(parent), attribute, stack)
        for hook in hooks:
            hook.remove()
    if any(before != after for before, after in shapes.values()):  # blocks that change the shape
        return int(_run_counted(model, x).get_total_flops())
    per_module, root = counter.get_flop_counts(), type(model).__name__
    cut_off = sum((len(stack) - first - 1) * sum(per_module.get(f"{root}.{name}.{first}", {}).values())
                  for name, (stack, first) in stacks.items())
    return int(counter.get_total_flops()) + cut_off


_FILLS = {torch.Tensor.uniform_, torch.Tensor.normal_, torch.Tensor.zero_, torch.Tensor.fill_}


class _SkipInit(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__module__", None) == "torch.nn.init" or func in _FILLS:
            return args[0] if args else kwargs["tensor"]  # every initialiser fills its first argument
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def shapes_only():
    """Build models as shapes without values: on the meta device, skipping torch.nn.init and the
    tensor fills (nothing to fill there, and each fill runs in Python on the meta device). Counts
    of parameters and FLOPs are those of the real model (tests/test_vit.py)."""
    with torch.device("meta"), _SkipInit():
        yield


def count_params(model, trainable_only=False):
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
