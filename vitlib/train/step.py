"""One training step and what it needs, as `fit` runs them and the benchmarks and tests measure
them: the optimiser (weight decay on matrices only), the step itself (forward under autocast,
fp32 loss, backward over micro-batches, clip, optimiser step, EMA), and the evaluation pass."""
import contextlib

import torch
import torch.nn.functional as F

from vitlib.train import distributed

# Parameters kept free of weight decay besides every 1-D one (biases, norm scales): position
# embeddings, the class token and relative-position tables (as timm and big_vision)
NO_DECAY_NAMES = ("pos_embed", "cls_token", "rel_pos")


def train_step(model, optimizer, micro_batches, config, *, lr=None, autocast=contextlib.nullcontext(),
               raw_model=None, ema_model=None):
    """One optimiser step, as fit takes it and the benchmarks measure it: for each (x, y) of
    `micro_batches` (gradient accumulation) the forward pass under `autocast`, the loss in fp32 with
    config.label_smoothing, backward; then clipping to config.clip_grad, the optimiser step, and
    the EMA update of `ema_model` from `raw_model`.

    model: what runs forward (the module, its torch.compile wrapper or DDP); raw_model: the module
    itself (default: model). lr: set on every parameter group first (None: leave it). x: (b, C, H, W);
    y: (b,) labels or (b, K) Mixup/CutMix targets. Returns (loss, correct): the step's mean loss
    and its correct predictions as 0-d tensors on the device (no host sync)."""
    raw_model = model if raw_model is None else raw_model
    if lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr
    loss_sum, correct = 0.0, 0
    for micro, (x, y) in enumerate(micro_batches):
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):  # all-reduce on the last only
            model.require_backward_grad_sync = micro == len(micro_batches) - 1
        with autocast:
            logits = model(x)  # (b, K)
            # the loss in fp32 whatever autocast's op lists say (CPU and CUDA differ)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=config.label_smoothing)
        (loss / len(micro_batches)).backward()
        loss_sum = loss_sum + loss.detach() / len(micro_batches)
        hard = y if y.ndim == 1 else y.argmax(dim=-1)
        correct = correct + (logits.argmax(dim=-1) == hard).sum()
    if config.clip_grad:
        torch.nn.utils.clip_grad_norm_(raw_model.parameters(), config.clip_grad)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if ema_model is not None:
        update_ema(ema_model, raw_model, config.ema_decay)
    return loss_sum, correct


def make_optimizer(model, config, device):
    """AdamW or SGD, with weight decay on matrices and conv kernels only, in torch's fused kernels
    (one call per step on CUDA and the CPU; 3-4% of the CPU training step against the per-parameter
    loop, bench/README.md), or its default kernels where this torch has no fused one."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 or any(k in name for k in NO_DECAY_NAMES) else decay).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "adamw":
        build = lambda **fused: torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, **fused)  # noqa: E731
    else:
        build = lambda **fused: torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum,  # noqa: E731
                                                nesterov=config.nesterov, **fused)
    if device.type not in ("cuda", "cpu"):  # e.g. the meta device of the tests: torch's default kernels
        return build()
    try:
        return build(fused=True)
    except (RuntimeError, ValueError, TypeError):  # no fused kernel for this device in this torch
        return build()


@torch.no_grad()
def update_ema(ema_model, model, decay):
    """ema <- decay * ema + (1 - decay) * weights, in fp32; buffers (BatchNorm statistics) copied."""
    ema_params = list(ema_model.parameters())
    torch._foreach_lerp_(ema_params, [p.detach().to(e.dtype) for e, p in zip(ema_params, model.parameters())],
                         1.0 - decay)
    for e, b in zip(ema_model.buffers(), model.buffers()):
        e.copy_(b)


@torch.no_grad()
def evaluate(model, stream, autocast, tta_flip, dist):
    """Top-1 accuracy over every example of the stream's dataset, and flip-TTA top-1 (mean logits
    of the image and its mirror) when asked, else None.

    Results are stored per example index and combined over ranks with a max, so the examples a
    multi-process stream repeats to even out the ranks count once."""
    was_training = model.training
    model.eval()
    index = stream.indices().to(dist.device)  # this rank's examples, in batch order
    hits = torch.zeros(3, len(stream.dataset), device=dist.device)  # (seen, correct, correct with TTA)
    start = 0
    for x, y in stream:  # x: (b, C, H, W), y: (b,)
        idx = index[start:start + len(y)]
        start += len(y)
        with autocast:
            logits = model(x).float()  # (b, K)
            if tta_flip:  # a copy: under CUDA graphs (compile_mode "reduce-overhead") the next call
                # writes its output where this one's was, and in fp32 .float() returns that same tensor
                logits = logits.clone()
                hits[2, idx] = ((logits + model(x.flip(-1)).float()).argmax(dim=-1) == y).float()
        hits[0, idx] = 1.0
        hits[1, idx] = (logits.argmax(dim=-1) == y).float()
    model.train(was_training)
    seen, plain, tta = distributed.all_reduce_max(hits, dist).sum(dim=1).tolist()
    if seen != len(stream.dataset):
        raise RuntimeError(f"evaluation saw {seen:.0f} of {len(stream.dataset)} examples")
    return plain / seen, (tta / seen if tta_flip else None)
