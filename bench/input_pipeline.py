"""Input-pipeline benchmarks: how fast vitlib's GPU-resident BatchStream delivers batches, and what it
adds to a training step (the GPU target: at most 3% over synthetic data already on the GPU).

    python -m bench.input_pipeline --device cuda --batches 50 --workers 8   # batch stream vs DataLoader
    python -m bench.input_pipeline --end-to-end [--compile]                 # training-step overhead
    python -m bench.input_pipeline --end-to-end --device cpu --recipe vit_cpu --img-size 16 --batch-size 128 \
        --model vit_ti4 --model-arg depth=6 --model-arg embed_dim=128 --model-arg num_heads=4 --model-arg mlp_dim=512
    python -m bench.input_pipeline --tiny --device cpu [--end-to-end]       # the tests' CPU size

Batch stream (default). Both paths start from the same decoded uint8 images in memory (no JPEG
decoding is timed) and do the same augmentation: random crop with 4 px reflect padding + horizontal
flip, and additionally RandAugment(2 ops, magnitude 9) + Mixup(alpha 0.8). BatchStream does it
batched on `--device`; the reference does it per image with torchvision.transforms.v2 in `--workers`
DataLoader processes, then copies the batch to the device (Mixup runs there, on the batch, with
torchvision's v2.MixUp). Images/s counts `--batches` batches after `--warmup` untimed ones,
synchronising the device before reading the clock. CSV: results/bench/input_pipeline.csv.

End to end (--end-to-end). One model (`--model`, default vit_s4 on the data's 32 px, or on
`--img-size` px resized once as fit does; `--model-arg k=v`; `--compile` wraps it in torch.compile)
takes fit's own training step (vitlib.train.step.train_step) with a recipe's settings (`--recipe`,
default vit_small_data) at a constant learning rate: the precision "auto" picks (vitlib.device: bf16
autocast on CUDA and on a native-bf16 CPU), cross-entropy with the recipe's label smoothing on
integer labels or Mixup/CutMix soft targets, backward, gradient clipping, the engine's AdamW (fused),
fed three ways:
    synthetic      one random batch already on the device, integer labels (the floor)
    recipe         BatchStream over the data set with the recipe's augmentation (vit_small_data:
                   pad-crop, flip, RandAugment(2, 9), Mixup 0.8 / CutMix 1.0)
    pad_crop+flip  BatchStream with the recipe's pad-crop and flip only
On the CPU, `--recipe vit_cpu --img-size 16 --batch-size 128` with the laptop ViT's shape is what
`vitlib train` runs there: what fit's batches cost its step beyond the step itself.
Each mode first runs `--warmup` untimed steps (compilation happens in the first mode's); then
`--rounds` rounds each time `--batches` steps of every mode in turn (CUDA events around the steps,
launches left asynchronous as in training), so a drift of the GPU's clock hits all three alike.
Per mode: the median ms/step over rounds, its spread (max - min), images/s, and overhead_pct =
100 x (ms/step over the synthetic mode's - 1). CSV: results/bench/input_pipeline_e2e.csv.

Every CSV row carries the environment (gpu, torch, commit, date; bench/common.py) and is rewritten
after every measurement, so a run cut by `timeout` keeps what it finished.
"""
import argparse
import copy
import dataclasses
import itertools
import os
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/input_pipeline.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench.common import (
    check_positive,
    environment,
    ms_per_call,
    print_table,
    progress,
    resolve_out,
    run_cli,
    synchronize,
    wall_seconds,
    write_csv,
)
from vitlib import create_model, list_models
from vitlib.data import AugmentConfig, BatchStream, get_dataset
from vitlib.device import autocast_context, configure_backends, resolve_device, resolve_precision
from vitlib.keyvalue import parse_overrides
from vitlib.train import RECIPES, get_recipe
from vitlib.train.step import make_optimizer, train_step

AUGMENTS = {
    "pad_crop+flip": AugmentConfig(crop="pad_crop", padding=4, flip=True),
    "randaugment+mixup": AugmentConfig(crop="pad_crop", padding=4, flip=True, randaugment_ops=2,
                                       randaugment_magnitude=9, mixup_alpha=0.8),
}
STREAM_COLUMNS = ("pipeline", "augment", "dataset", "images", "img_size", "batch_size", "workers", "batches",
                  "seconds", "images_per_s", "torchvision", "cpus")
RECIPE = "vit_small_data"  # whose augmentation and training step the end-to-end mode times by default
# the numbers first: gpu_check.sh prints the first 12 columns
E2E_COLUMNS = ("mode", "step_ms", "step_ms_spread", "images_per_s", "overhead_pct", "loss", "model", "compile",
               "precision", "batch_size", "steps", "rounds", "dataset", "images", "img_size", "augment")
TINY = dict(dataset="fake", batch_size=16, batches=3, warmup=1, rounds=2, workers=0, model="vit_ti4")
TINY_MODEL_ARGS = dict(depth=2, embed_dim=64, num_heads=2, mlp_dim=128)


# ---- batch stream: BatchStream vs DataLoader + torchvision ----------------------------------------

class TransformedImages(torch.utils.data.Dataset):
    """uint8 images in memory, transformed one at a time (the usual DataLoader recipe)."""

    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(self.images[i]), self.labels[i]


def torchvision_transform(config: AugmentConfig, size: int, mean, std):
    from torchvision.transforms import v2

    ops = [v2.RandomCrop(size, padding=config.padding, padding_mode="reflect"), v2.RandomHorizontalFlip()]
    if config.randaugment_ops:
        ops.append(v2.RandAugment(num_ops=config.randaugment_ops, magnitude=int(config.randaugment_magnitude)))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    return v2.Compose(ops)


def batch_stream_batches(data, config, args):
    """BatchStream's batches, epoch after epoch, without end."""
    stream = BatchStream(data, args.batch_size, device=args.device, augment=config, seed=0)
    for epoch in itertools.count():
        stream.set_epoch(epoch)
        yield from stream


def dataloader_batches(data, config, args):
    from torchvision.transforms import v2

    transform = torchvision_transform(config, data.images.shape[-1], data.mean, data.std)
    loader = torch.utils.data.DataLoader(
        TransformedImages(data.images, data.labels, transform), batch_size=args.batch_size, shuffle=True,
        drop_last=True, num_workers=args.workers, pin_memory=torch.device(args.device).type == "cuda",
        persistent_workers=args.workers > 0)
    mixup = v2.MixUp(alpha=config.mixup_alpha, num_classes=data.num_classes) if config.mixup_alpha else None
    while True:
        for x, y in loader:
            x, y = x.to(args.device, non_blocking=True), y.to(args.device, non_blocking=True)
            yield mixup(x, y) if mixup else (x, y)


def images_per_second(batches, args) -> tuple[float, float]:
    for _ in range(args.warmup):
        next(batches)
    synchronize(args.device)
    start = time.perf_counter()
    for _ in range(args.batches):
        next(batches)
    synchronize(args.device)
    seconds = time.perf_counter() - start
    return args.batches * args.batch_size / seconds, seconds


def stream_benchmark(data, args, env):
    import torchvision

    rows = []
    for augment, config in AUGMENTS.items():
        for pipeline, make in (("BatchStream", batch_stream_batches), ("DataLoader+torchvision", dataloader_batches)):
            progress(f"{pipeline}, {augment}: {args.warmup} + {args.batches} batches")
            rate, seconds = images_per_second(make(data, config, args), args)
            rows.append({"pipeline": pipeline, "augment": augment, "dataset": data.name, "images": len(data),
                         "img_size": data.images.shape[-1], "batch_size": args.batch_size,
                         "workers": args.workers if pipeline.startswith("DataLoader") else 0,
                         "batches": args.batches, "seconds": seconds, "images_per_s": round(rate),
                         "torchvision": torchvision.__version__, "cpus": os.cpu_count()})
            write_csv(rows, args.out, STREAM_COLUMNS, env)
    print_table(rows, ("pipeline", "augment", "workers", "images_per_s"),
                title=f"Input pipeline: batches of {args.batch_size} from {data.name}, on {env['gpu']}")
    return rows


# ---- end to end: training steps on synthetic data vs on BatchStream's batches ---------------------

def e2e_augments(recipe):
    """name -> AugmentConfig (None: synthetic) of the three end-to-end modes, from the recipe."""
    full = recipe.augment_config()
    light = dataclasses.replace(full, randaugment_ops=0, mixup_alpha=0.0, cutmix_alpha=0.0)
    return {"synthetic": None, "recipe": full, "pad_crop+flip": light}


def describe(config):
    """A short comma-free label of an AugmentConfig (a CSV cell that `cut -d,` keeps whole)."""
    if config is None:
        return "none: one batch on the device"
    parts = [f"{config.crop} {config.padding}px {config.padding_mode}"] + ["flip"] * config.flip
    if config.randaugment_ops:
        parts.append(f"randaugment {config.randaugment_ops}x{config.randaugment_magnitude:g}")
    if config.mixes:
        parts.append(f"mixup {config.mixup_alpha:g}/cutmix {config.cutmix_alpha:g}")
    return " + ".join(parts)


def synthetic_batches(data, batch_size, device):
    """The same normalised-looking random batch, already on the device, at every step."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, *data.images.shape[1:], generator=generator).to(device)  # (B, C, H, W)
    y = torch.randint(data.num_classes, (batch_size,), generator=generator).to(device)  # (B,)
    return itertools.repeat((x, y))


def make_train_step(net, model, optimizer, recipe, device):
    """step(x, y) -> loss: fit's train_step (grad_accum 1, EMA when the recipe has one) at a constant
    learning rate."""
    autocast = autocast_context(device)
    ema_model = copy.deepcopy(model).float().requires_grad_(False) if recipe.ema_decay else None
    # x: (B, C, H, W); y: (B,) labels or (B, K) Mixup/CutMix targets
    return lambda x, y: train_step(net, optimizer, [(x, y)], recipe, autocast=autocast, raw_model=model,
                                   ema_model=ema_model)[0]


def e2e_benchmark(data, args, env):
    device = torch.device(args.device)
    configure_backends(device)  # as fit: TF32 and cudnn.benchmark on CUDA, freed memory kept on the CPU
    recipe = get_recipe(args.recipe)
    model = create_model(args.model, num_classes=data.num_classes, img_size=data.images.shape[-1],
                         in_chans=data.images.shape[1], **args.model_args).to(device).train()
    optimizer = make_optimizer(model, recipe, device)
    step = make_train_step(torch.compile(model) if args.compile else model, model, optimizer, recipe, device)
    configs = e2e_augments(recipe)
    feeds = {name: synthetic_batches(data, args.batch_size, device) if config is None
             else batch_stream_batches(data, config, args) for name, config in configs.items()}
    losses = {name: [] for name in configs}  # this round's step losses, on the device: no sync per step
    run = lambda name: losses[name].append(step(*next(feeds[name])))  # noqa: E731
    for name in configs:
        seconds = wall_seconds(lambda: run(name), args.warmup, device)
        progress(f"warm-up {name}: {args.warmup} steps in {seconds:.1f} s")
    ms = {name: [] for name in configs}
    model_name = " ".join([args.model, *(f"{k}={v}" for k, v in args.model_args.items())])
    for r in range(args.rounds):
        for name in configs:
            losses[name].clear()
            ms[name].append(ms_per_call(lambda: run(name), args.batches, device))
        base = statistics.median(ms["synthetic"])
        rows = []
        for name, config in configs.items():
            median = statistics.median(ms[name])
            rows.append(dict(mode=name, augment=describe(config), dataset=data.name, images=len(data),
                             img_size=data.images.shape[-1], model=model_name,
                             compile="default" if args.compile else "none", precision=resolve_precision(device),
                             batch_size=args.batch_size, steps=args.batches, rounds=r + 1, step_ms=median,
                             step_ms_spread=max(ms[name]) - min(ms[name]),
                             images_per_s=round(1000 * args.batch_size / median),
                             overhead_pct=100 * (median / base - 1), loss=torch.stack(losses[name]).mean().item()))
        write_csv(rows, args.out, E2E_COLUMNS, env)
        progress(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {m[-1]:.2f} ms" for n, m in ms.items()))
    print_table(rows, ("mode", "augment", "step_ms", "step_ms_spread", "images_per_s", "overhead_pct", "loss"),
                title=f"End to end: {model_name} (compile {rows[0]['compile']}, {rows[0]['precision']}), batch "
                      f"{args.batch_size} from {data.name}, on {env['gpu']}"
                      + ("; GPU target: overhead <= 3%" if device.type == "cuda" else ""))
    return rows


# ---- command line ---------------------------------------------------------------------------------

def load(args):
    if args.dataset == "auto":
        try:
            return get_dataset("cifar10", "train", download=False, img_size=args.img_size)
        except FileNotFoundError:
            args.dataset = "fake"
    if args.dataset == "fake":  # enough images for every timed batch of a round in one epoch
        return get_dataset("fake", "train", num_images=(args.batches + args.warmup) * args.batch_size,
                           img_size=args.img_size)
    return get_dataset(args.dataset, "train", download=False, img_size=args.img_size)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--end-to-end", action="store_true", help="time training steps instead of batches")
    p.add_argument("--tiny", action="store_true", help=f"CPU test size: {TINY}, model args {TINY_MODEL_ARGS}")
    p.add_argument("--dataset", default="auto", help="cifar10 if found locally ($VITLIB_DATA), else fake")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--batches", type=int, default=50, help="timed batches per pipeline (steps per round and mode)")
    p.add_argument("--warmup", type=int, default=5, help="untimed batches (steps) first, per pipeline (mode)")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--img-size", type=int, default=None, help="resize the images once, as fit does (default: "
                                                            "the data's own size)")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="DataLoader processes")
    p.add_argument("--out", default=None, help="CSV path (default results/bench/input_pipeline[_e2e].csv)")
    e2e = p.add_argument_group("end to end (--end-to-end)")
    e2e.add_argument("--model", default="vit_s4", help="a vitlib.list_models() name")
    e2e.add_argument("--model-arg", action="append", metavar="KEY=VALUE", help="a model field (repeatable)")
    e2e.add_argument("--compile", action="store_true", help="torch.compile the model (default mode)")
    e2e.add_argument("--recipe", default=RECIPE, help=f"whose augmentation and step settings (default {RECIPE})")
    e2e.add_argument("--rounds", type=int, default=3, help="rounds of --batches steps per mode; median reported")
    if p.parse_known_args(argv)[0].tiny:  # tiny sizes as defaults: explicit flags still win
        p.set_defaults(**TINY)
    args = p.parse_args(argv)
    check_positive(batches=args.batches, batch_size=args.batch_size, rounds=args.rounds)
    if args.warmup < 0 or args.workers < 0:
        raise ValueError(f"--warmup ({args.warmup}) and --workers ({args.workers}) must be >= 0")
    if args.img_size is not None:
        check_positive(img_size=args.img_size)
    if args.recipe not in RECIPES:
        raise ValueError(f"--recipe {args.recipe!r} is unknown; allowed: {', '.join(RECIPES)}")
    if args.model not in list_models():
        raise ValueError(f"--model {args.model!r} is unknown; allowed: {', '.join(list_models())}")
    args.model_args = {**(TINY_MODEL_ARGS if args.tiny else {}), **parse_overrides(args.model_arg, "--model-arg")}
    args.device = str(resolve_device(args.device))
    args.out = resolve_out(args.out, "input_pipeline_e2e" if args.end_to_end else "input_pipeline")
    return args


def main(argv=None):
    args = parse_args(argv)
    data = load(args)
    env = environment(args.device)
    progress(f"{'end to end' if args.end_to_end else 'batch stream'}: {data.name} {tuple(data.images.shape)}, "
             f"batch {args.batch_size}, {env['gpu']}, torch {env['torch']}, commit {env['commit']} -> {args.out}")
    return (e2e_benchmark if args.end_to_end else stream_benchmark)(data, args, env)


if __name__ == "__main__":
    run_cli(main)
