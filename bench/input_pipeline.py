"""Input-pipeline throughput: the GPU-resident BatchStream against a torchvision DataLoader.

    python bench/input_pipeline.py --device cuda --batches 50 --workers 8

Both paths start from the same decoded uint8 images in memory (no JPEG decoding is timed) and do
the same augmentation: random crop with 4 px reflect padding + horizontal flip, and additionally
RandAugment(2 ops, magnitude 9) + Mixup(alpha 0.8). BatchStream does it batched on `--device`;
the reference does it per image with torchvision.transforms.v2 in `--workers` DataLoader
processes, then copies the batch to the device (Mixup runs there, on the batch, with
torchvision's v2.MixUp). Images/s counts `--batches` batches after `--warmup` untimed ones,
synchronising the device before reading the clock.

Prints a table last and writes one row per pipeline to `--out` (default
results/bench/input_pipeline.csv) with the environment: device name, torch/torchvision versions,
git commit, CPU count.
"""
import argparse
import csv
import datetime
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable as a plain script from anywhere

from vitlib.data import AugmentConfig, BatchStream, get_dataset  # noqa: E402

AUGMENTS = {
    "pad_crop+flip": AugmentConfig(crop="pad_crop", padding=4, flip=True),
    "randaugment+mixup": AugmentConfig(crop="pad_crop", padding=4, flip=True, randaugment_ops=2,
                                       randaugment_magnitude=9, mixup_alpha=0.8),
}


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
    stream = BatchStream(data, args.batch_size, device=args.device, augment=config, seed=0)
    epoch = 0
    while True:
        stream.set_epoch(epoch)
        yield from stream
        epoch += 1


def dataloader_batches(data, config, args):
    from torchvision.transforms import v2

    transform = torchvision_transform(config, data.images.shape[-1], data.mean, data.std)
    loader = torch.utils.data.DataLoader(
        TransformedImages(data.images, data.labels, transform), batch_size=args.batch_size, shuffle=True,
        drop_last=True, num_workers=args.workers, pin_memory=args.device.startswith("cuda"),
        persistent_workers=args.workers > 0)
    mixup = v2.MixUp(alpha=config.mixup_alpha, num_classes=data.num_classes) if config.mixup_alpha else None
    while True:
        for x, y in loader:
            x, y = x.to(args.device, non_blocking=True), y.to(args.device, non_blocking=True)
            yield mixup(x, y) if mixup else (x, y)


def images_per_second(batches, args) -> tuple[float, float]:
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    for _ in range(args.warmup):
        next(batches)
    sync()
    start = time.perf_counter()
    for _ in range(args.batches):
        x, _ = next(batches)
    sync()
    seconds = time.perf_counter() - start
    return args.batches * args.batch_size / seconds, seconds


def environment(device: str) -> dict:
    import torchvision

    def git(*cmd):
        try:
            return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD")
    if commit and git("status", "--porcelain"):
        commit += "-dirty"
    name = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "cpu"
    return {"device": device, "device_name": name, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "git_commit": commit, "cpus": os.cpu_count(), "date": datetime.datetime.now().isoformat(timespec="seconds")}


def load(args):
    if args.dataset == "auto":
        try:
            return get_dataset("cifar10", "train", download=False)
        except FileNotFoundError:
            args.dataset = "fake"
    if args.dataset == "fake":  # enough images for every timed batch in one epoch
        return get_dataset("fake", "train", num_images=(args.batches + args.warmup) * args.batch_size)
    return get_dataset(args.dataset, "train", download=False)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="auto", help="cifar10 if found locally, else fake")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", type=int, default=50, help="timed batches per pipeline")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches first")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="DataLoader processes")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "input_pipeline.csv")
    args = parser.parse_args(argv)
    for name in ("batches", "batch_size"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")

    data = load(args)
    env = environment(args.device)
    rows = []
    for augment, config in AUGMENTS.items():
        for pipeline, make in (("BatchStream", batch_stream_batches), ("DataLoader+torchvision", dataloader_batches)):
            rate, seconds = images_per_second(make(data, config, args), args)
            rows.append({"pipeline": pipeline, "augment": augment, "dataset": data.name, "images": len(data),
                         "img_size": data.images.shape[-1], "batch_size": args.batch_size,
                         "workers": args.workers if pipeline.startswith("DataLoader") else 0,
                         "batches": args.batches, "seconds": round(seconds, 4), "images_per_s": round(rate, 1), **env})

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"{data.name} {tuple(data.images.shape)}, batch {args.batch_size}, {env['device_name']}, "
          f"torch {env['torch']}, commit {env['git_commit']} -> {args.out}")
    print(f"{'pipeline':<24}{'augment':<20}{'workers':>8}{'images/s':>12}")
    for row in rows:
        print(f"{row['pipeline']:<24}{row['augment']:<20}{row['workers']:>8}{row['images_per_s']:>12,.0f}")
    return rows


if __name__ == "__main__":
    main()
