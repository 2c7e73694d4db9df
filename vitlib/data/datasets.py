"""`get_dataset`: a named image-classification dataset as uint8 tensors, ready for BatchStream.

    train = get_dataset("cifar10", "train", val_fraction=0.02, seed=0)   # 49,000 images
    val = get_dataset("cifar10", "val", val_fraction=0.02, seed=0)       # the 1,000 held out
    test = get_dataset("cifar10", "test")

Data is looked for locally first (`data_dir`, else $VITLIB_DATA, else ~/.cache/vitlib) and only
downloaded (CIFAR, through torchvision) when none is found. Archives are decoded once into a cache
(see vitlib/data/cache.py). Where each dataset comes from: vitlib/data/sources.py.
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vitlib.data import folder, sources
from vitlib.data.augment import resize_images
from vitlib.data.cache import memoize

DATASETS = ("cifar10", "cifar100", "tiny-imagenet", "imagefolder", "digits", "fake")
SPLITS = ("train", "val", "test")
# Extra keyword options each dataset accepts, with their defaults.
OPTIONS = {
    "digits": {"channels": 1},
    "fake": {"num_images": 256, "num_classes": 10, "channels": 3},
    "imagefolder": {"in_memory": True},
}
DEFAULT_IMG_SIZE = {"digits": 16, "fake": 32}


@dataclass
class ImageDataset:
    images: torch.Tensor  # (N, C, H, W) uint8, CPU
    labels: torch.Tensor  # (N,) int64
    classes: list[str]  # label i is classes[i]: its id (a folder name; Tiny-ImageNet: a WordNet id)
    mean: tuple[float, ...]  # per channel, 0..1 units: normalise with (x / 255 - mean) / std
    std: tuple[float, ...]
    name: str
    split: str = ""
    source: str = ""  # the archive/folder/package read, for provenance
    class_names: list[str] | None = None  # label i's readable name ("goldfish" for n01443537); None: the ids

    def __post_init__(self):
        self.class_names = list(self.classes if self.class_names is None else self.class_names)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def get_dataset(name: str, split: str, data_dir=None, *, img_size: int | None = None,
                train_size: int | None = None, val_fraction: float = 0.0, seed: int = 0,
                val_size: int | None = None, val_seed: int = 0, download: bool = True, **options):
    """Load split "train" | "val" | "test" of dataset `name` (see DATASETS).

    - cifar10 / cifar100: the project's JPEG copy (`cifar10-jpeg.tar.gz` or its extracted
      `cifar10/{train,test}/<class>/`) or torchvision's pickles; downloaded by torchvision only if
      neither is found and `download` is true.
    - tiny-imagenet: Tiny-ImageNet-200 at any resolution (`tiny-imagenet-32-jpeg.tar.gz`,
      `tiny-imagenet-200.zip` or extracted). Its test set has no labels, so split "test" is its
      labelled val set (50 per class); use `val_fraction` to hold out a validation set from train.
    - imagefolder: `data_dir` = a <split>/<class>/<image> tree, or a .tar.gz/.zip of one. Split
      names are its folder names. `in_memory=False` returns a lazily decoding `FolderDataset`.
    - digits: scikit-learn's 8x8 digits (offline), resized to 16 px by default; `channels=3`
      repeats the grey channel. Fixed 80/20 stratified split (seed 0), whatever `seed` is.
    - fake: random images with a learnable class pattern; `num_images` per split, `num_classes`,
      `channels`, `img_size` (default 32).

    img_size: resize to (img_size, img_size), bilinear with antialiasing, after the cache.
    val_fraction: hold out this stratified share of train (at least one image per class; the paper
        holds out 2 % of CIFAR: 0.02); "val" returns it and "train" excludes it. "val" without it is
        only valid for an imagefolder that has its own val/ folder.
    val_size: hold out this many images instead (the same stratified draw, at the fraction
        val_size / training images), e.g. 5000 of CIFAR-10's 50,000.
    val_seed: draws the held-out images. It is apart from `seed` so that runs of different seeds
        (and training-set sizes) share one validation set and never train on each other's.
    train_size: a class-balanced, seed-determined subset of that train split (nested: the subset of
        size n is contained in the one of size 2n for the same seed).
    mean / std: per channel of the full train split (before holding out val), or the known
        constants for CIFAR.
    """
    options = _check_args(name, split, img_size, train_size, val_fraction, seed, options, val_size)
    if not isinstance(val_seed, int) or isinstance(val_seed, bool) or val_seed < 0:
        raise ValueError(f"val_seed={val_seed!r}; must be an int >= 0")
    if val_size is not None:
        if not isinstance(val_size, int) or isinstance(val_size, bool) or val_size <= 0:
            raise ValueError(f"val_size={val_size!r}; must be a positive int or None")
        if val_fraction:
            raise ValueError(f"pass val_fraction={val_fraction} or val_size={val_size}, not both")
    if data_dir is not None and name not in ("digits", "fake") and not Path(data_dir).expanduser().exists():
        raise FileNotFoundError(f"data_dir {str(data_dir)!r} does not exist; nothing is downloaded into a folder "
                                "that is not there: pass an existing folder or archive, or no data_dir "
                                "($VITLIB_DATA, then ~/.cache/vitlib, where a download may go)")
    img_size = img_size or DEFAULT_IMG_SIZE.get(name)
    if name in ("cifar10", "cifar100"):
        raw = sources.load_cifar(name, sources.data_root(data_dir), download, img_size)
    elif name == "tiny-imagenet":
        raw = sources.load_tiny_imagenet(sources.data_root(data_dir), img_size)
    elif name == "imagefolder":
        raw = folder.load_imagefolder(data_dir, in_memory=options["in_memory"], img_size=img_size)
    elif name == "digits":
        raw = sources.load_digits(options["channels"])
    else:
        raw = sources.load_fake(seed, img_size, options["num_images"], options["num_classes"], options["channels"])
    index = select_indices(raw, name, split, val_fraction or val_size or 0, train_size, seed, val_seed)
    if raw.images is None:
        mean, std = folder.estimate_stats(raw, img_size)
        return folder.FolderDataset([raw.paths[i] for i in index.tolist()], raw.labels[index], raw.classes,
                                    mean, std, name, img_size=img_size, split=split, source=raw.origin,
                                    channels=folder.folder_channels(raw), class_names=raw.class_names)
    mean, std = (raw.mean, raw.std) if raw.mean is not None else _train_stats(raw)
    images = _take(raw.images, index)
    if img_size:
        images = resize_images(images, img_size)
    return ImageDataset(images, raw.labels[index], raw.classes, tuple(mean), tuple(std), name,
                        split=split, source=raw.origin, class_names=raw.class_names)


def _take(images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """images[index]; a view when index is one contiguous range (a whole split of the cache)."""
    if len(index) and int(index[-1]) - int(index[0]) + 1 == len(index) and bool((index.diff() == 1).all()):
        return images[int(index[0]):int(index[-1]) + 1]
    return images.index_select(0, index)


def _check_args(name, split, img_size, train_size, val_fraction, seed, options, val_size=None) -> dict:
    """Every argument checked before any data is read."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r}; must be an int >= 0")
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {DATASETS}")
    if name != "imagefolder" and split not in SPLITS:
        raise ValueError(f"unknown split {split!r} for {name}; allowed: {SPLITS}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction}; must be in [0, 1)")
    if split == "val" and val_fraction == 0 and not val_size and name != "imagefolder":
        raise ValueError(f"{name} has no split 'val' of its own: pass val_fraction > 0 (e.g. 0.02) or val_size to "
                         f"hold out part of train; allowed splits without it: ('train', 'test')")
    if img_size is not None and not (isinstance(img_size, int) and img_size > 0):
        raise ValueError(f"img_size={img_size!r}; must be a positive int or None")
    if train_size is not None and not (isinstance(train_size, int) and train_size > 0):
        raise ValueError(f"train_size={train_size!r}; must be a positive int or None")
    allowed = OPTIONS.get(name, {})
    unknown = set(options) - set(allowed)
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for {name}; allowed: {sorted(allowed) or 'none'}")
    options = {**allowed, **options}
    for key in ("num_images", "num_classes"):
        if key in options and not (isinstance(options[key], int) and options[key] > 0):
            raise ValueError(f"{key}={options[key]!r}; must be a positive int")
    if not isinstance(options.get("in_memory", True), bool):
        raise ValueError(f"in_memory={options['in_memory']!r}; must be True or False")
    if "channels" in options and options["channels"] not in (1, 3):
        raise ValueError(f"channels={options['channels']!r}; allowed: (1, 3)")
    return options


def select_indices(raw, name, split, val, train_size, seed, val_seed=0) -> torch.Tensor:
    """Indices into `raw` for the requested split, after the held-out val (`val`: a fraction of the
    training split below 1, or a number of images; drawn by `val_seed`) and the train_size subset
    (drawn by `seed` from what remains)."""
    if split not in ("train", "val") or (split == "val" and val == 0):
        if split not in raw.split_index:
            raise ValueError(f"{name} at {raw.origin} has no split {split!r}; available: "
                             f"{sorted(raw.split_index)} (and 'val' with val_fraction > 0)")
        return raw.split_index[split]
    if "train" not in raw.split_index:
        raise ValueError(f"{name} at {raw.origin} has no 'train' split; available: {sorted(raw.split_index)}")
    index = raw.split_index["train"]
    if val > 0:
        if val >= 1 and val >= len(index):
            raise ValueError(f"val_size={val} leaves no training images of {name}'s {len(index)}")
        fraction = val / len(index) if val >= 1 else val
        held = torch.from_numpy(stratified_holdout(raw.labels[index].numpy(), fraction, val_seed))
        index = index[held] if split == "val" else index[~held]
    if split == "train" and train_size is not None:
        index = index[torch.from_numpy(balanced_subset(raw.labels[index].numpy(), train_size, seed, len(raw.classes)))]
    return index


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask: round(fraction * class size) random examples of each class, at least one
    for classes of two or more."""
    counts = np.bincount(labels)
    quota = np.where(counts >= 2, np.maximum(1, np.round(fraction * counts)), 0)
    return sources.class_ranks(labels, np.random.default_rng([seed, 1])) < quota[labels]


def balanced_subset(labels: np.ndarray, size: int, seed: int, num_classes: int) -> np.ndarray:
    """Sorted indices of `size` examples, as equal per class as the class sizes allow."""
    if size > len(labels):
        raise ValueError(f"train_size={size} exceeds the {len(labels)} training examples available")
    if size < num_classes:
        raise ValueError(f"train_size={size} is below num_classes={num_classes}; a class-balanced "
                         f"subset needs at least one example per class")
    rng = np.random.default_rng([seed, 2])
    ranks = sources.class_ranks(labels, rng)
    class_order = rng.permutation(num_classes)
    # Take the first example of every class, then the second of every class, ...; ties between
    # classes go by a seeded class order, so the leftover n mod K picks rotate over seeds.
    key = ranks * num_classes + class_order[labels]
    return np.sort(np.argsort(key, kind="stable")[:size])


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple, tuple]:
    """Per-channel mean and std of uint8 (N, C, H, W) images, in 0..1 units."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    square = torch.zeros_like(total)
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk].float()
        total += x.sum((0, 2, 3)).double()
        square += (x * x).sum((0, 2, 3)).double()
    count = images.numel() / images.shape[1]
    mean = total / count
    std = (square / count - mean**2).clamp(min=0).sqrt()
    return tuple((mean / 255).tolist()), tuple((std / 255).tolist())


def _train_stats(raw) -> tuple[tuple, tuple]:
    # A tree without a train/ folder: normalise with the stats of everything labelled.
    train = raw.split_index.get("train")
    if train is None:
        train = torch.cat(list(raw.split_index.values()))
    compute = lambda: channel_stats(_take(raw.images, train))  # noqa: E731
    if raw.stats_key is None:
        return compute()
    return memoize("stats", f"{raw.stats_key}|train", lambda: [list(s) for s in compute()])
