"""Where each named dataset comes from, and how its files map to (image, label, split).

Every loader returns a `RawData`: all examples of a source with their labels and, per split, the
indices of its examples (sorted by file name, so an archive and its extracted folder give the same
order). `vitlib.data.datasets.get_dataset` then holds out, subsets, resizes and normalises.
"""
import os
import pickle
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vitlib.data.cache import load_decoded, memoize, memoize_file
from vitlib.data.decode import read_named_texts

# JPEG copy stats are measured on cifar10-jpeg.tar.gz (quality-75 JPEGs); the
# pickle stats are the usual published values for the original pixels.
CIFAR = {
    "cifar10": dict(archive="cifar10-jpeg.tar.gz", folder="cifar10", pickles="cifar-10-batches-py",
                    torchvision="CIFAR10", num_classes=10,
                    jpeg_stats=((0.4913, 0.4821, 0.4465), (0.2452, 0.2428, 0.2606)),
                    pickle_stats=((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))),
    "cifar100": dict(archive="cifar100-jpeg.tar.gz", folder="cifar100", pickles="cifar-100-python",
                     torchvision="CIFAR100", num_classes=100, jpeg_stats=None,
                     pickle_stats=((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))),
}
TINY_ARCHIVES = ("tiny-imagenet-32-jpeg.tar.gz", "tiny-imagenet-200.zip")
TINY_FOLDERS = ("tiny-imagenet-32", "tiny-imagenet-200")
TINY_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


@dataclass
class RawData:
    labels: torch.Tensor  # (N,) int64; -1 for unlabelled members (never in a split)
    split_index: dict[str, torch.Tensor]  # split -> int64 indices into labels/images
    classes: list[str]  # the label ids: folder names (Tiny-ImageNet: WordNet ids)
    origin: str  # what was read, for provenance
    images: torch.Tensor | None = None  # (N, C, H, W) uint8; None for a lazily decoded folder
    paths: list[str] | None = None  # lazy folder: one file per example
    mean: tuple | None = None  # known constants; None = compute from the train split
    std: tuple | None = None
    stats_key: str | None = None  # memo key for computed stats (None: cheap, compute each time)
    class_names: list[str] | None = None  # a readable name per class where the ids are not (None: the ids)


def data_root(data_dir=None) -> Path:
    """`data_dir`, else $VITLIB_DATA, else ~/.cache/vitlib."""
    root = data_dir or os.environ.get("VITLIB_DATA") or Path.home() / ".cache" / "vitlib"
    return Path(root).expanduser()


def class_ranks(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each example's position within its class under a random shuffle (0 = first drawn)."""
    order = rng.permutation(len(labels))
    grouped = order[np.argsort(labels[order], kind="stable")]  # by class, shuffled within class
    counts = np.bincount(labels)
    starts = np.cumsum(counts) - counts
    ranks = np.empty(len(labels), dtype=np.int64)
    ranks[grouped] = np.arange(len(labels)) - np.repeat(starts, counts)
    return ranks


def raw_from_members(names, split_of, class_of, classes, origin, images=None, paths=None) -> RawData:
    """Labels and per-split indices (sorted by member name) from per-member split/class names."""
    class_index = {c: i for i, c in enumerate(classes)}
    labels = [class_index.get(c, -1) for c in class_of]
    split_index = {}
    for split in sorted({s for s in split_of if s is not None}):
        members = [i for i, s in enumerate(split_of) if s == split and labels[i] >= 0]
        split_index[split] = torch.tensor(sorted(members, key=names.__getitem__), dtype=torch.int64)
    return RawData(torch.tensor(labels, dtype=torch.int64), split_index, list(classes), origin,
                   images=images, paths=paths)


def raw_from_decoded(decoded, origin: str, layout: str, parse) -> RawData:
    """RawData of a decoded archive. `parse(names, texts) -> (split_of, class_of, classes)` runs
    once per cache file: its result is cached beside it (a cached load then does no per-image work)."""

    def compute():
        split_of, class_of, classes = parse(decoded.names, decoded.texts)
        raw = raw_from_members(decoded.names, split_of, class_of, classes, origin)
        return {"labels": raw.labels, "split_index": raw.split_index, "classes": raw.classes}

    parsed = memoize_file(f"{decoded.key}.{layout}", compute)
    return RawData(parsed["labels"], parsed["split_index"], parsed["classes"], origin,
                   images=decoded.images, stats_key=decoded.key)


def folder_layout(where):
    """Parser for [<prefix>/]<split>/<class>/<image> names; classes are the sorted class folders."""

    def parse(names, texts):
        splits, class_names = split_class_layout(names, where)
        return splits, class_names, sorted(set(class_names))

    return parse


def split_class_layout(names: list[str], where) -> tuple[list[str], list[str]]:
    """(split, class) of each name laid out as [<prefix>/]<split>/<class>/<image>."""
    parts = [name.split("/") for name in names]
    prefix = parts[0][:-3] if len(parts[0]) >= 3 else None
    for name, p in zip(names, parts):
        if len(p) < 3 or p[:-3] != prefix:
            raise ValueError(f"{where}: expected images laid out as <split>/<class>/<image>, found {name!r}")
    return [p[-3] for p in parts], [p[-2] for p in parts]


def load_cifar(name: str, root: Path, download: bool, size: int | None = None) -> RawData:
    """CIFAR from the JPEG copy or torchvision's pickles under `root` (see get_dataset); `size`: the
    size to decode an archive of mixed image sizes to."""
    spec = CIFAR[name]
    jpeg_candidates = [root / spec["archive"], root / spec["folder"]]
    pickle_candidates = [root / spec["pickles"]]
    if root.is_file() or (root / "train").is_dir():  # data_dir is the archive / the extracted tree
        jpeg_candidates.insert(0, root)
    if (root / "batches.meta").exists() or (root / "meta").exists():
        pickle_candidates.insert(0, root)
    for path in jpeg_candidates:
        if path.exists():
            return _cifar_jpeg(name, path, size)
    for path in pickle_candidates:
        if path.is_dir():
            return _cifar_pickles(name, path)
    how = (f"put {spec['archive']} (or the extracted {spec['folder']}/ folder, or torchvision's "
           f"{spec['pickles']}/) there, point data_dir or $VITLIB_DATA at it, or pass download=True "
           f"on a machine with network access")
    missing = f"{name} not found; searched {[str(p) for p in jpeg_candidates + pickle_candidates]}. To get it: {how}"
    if not download:
        raise FileNotFoundError(missing)
    try:  # one download holds both splits
        import torchvision.datasets

        getattr(torchvision.datasets, spec["torchvision"])(root=str(root), train=True, download=True)
    except Exception as err:  # no network, proxy, read-only root: say what to do instead
        raise FileNotFoundError(f"{missing} (download into {root} failed: {err!r})") from err
    return _cifar_pickles(name, root / spec["pickles"])


def _cifar_jpeg(name: str, path: Path, size: int | None = None) -> RawData:
    spec = CIFAR[name]
    # Sorted class folder names are the standard CIFAR label order.
    raw = raw_from_decoded(load_decoded(path, size=size), str(path), "split-class", folder_layout(path))
    if len(raw.classes) != spec["num_classes"] or not {"train", "test"} <= set(raw.split_index):
        raise ValueError(f"{path}: expected {spec['num_classes']} class folders under train/ and test/, "
                         f"found {len(raw.classes)} classes and splits {sorted(raw.split_index)}")
    if spec["jpeg_stats"]:
        raw.mean, raw.std = spec["jpeg_stats"]
    return raw


def _cifar_pickles(name: str, folder: Path) -> RawData:
    """torchvision's download format: pickled dicts of (N, 3072) uint8 rows in CHW order."""
    if name == "cifar10":
        files = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
        meta, label_key, names_key = "batches.meta", b"labels", b"label_names"
    else:
        files = {"train": ["train"], "test": ["test"]}
        meta, label_key, names_key = "meta", b"fine_labels", b"fine_label_names"

    def read(file):
        with open(folder / file, "rb") as f:
            return pickle.load(f, encoding="bytes")

    images, labels, split_index, start = [], [], {}, 0
    for split, batch_files in files.items():
        for file in batch_files:
            batch = read(file)
            images.append(torch.from_numpy(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)))
            labels.append(torch.tensor(batch[label_key], dtype=torch.int64))
        count = sum(map(len, labels)) - start
        split_index[split] = torch.arange(start, start + count)
        start += count
    classes = [c.decode() for c in read(meta)[names_key]]
    mean, std = CIFAR[name]["pickle_stats"]
    return RawData(torch.cat(labels), split_index, classes, str(folder), images=torch.cat(images),
                   mean=mean, std=std)


def load_tiny_imagenet(root: Path, size: int | None = None) -> RawData:
    """Tiny-ImageNet-200 at any resolution: train/<wnid>/images/*, val/images/* + val_annotations.txt.

    Its test set has no labels, so the labelled val set becomes split "test". The classes are its
    WordNet ids; their readable names come from words.txt (see `wordnet_names`).
    """
    candidates = [root / n for n in TINY_ARCHIVES + TINY_FOLDERS]
    if root.is_file() or (root / "wnids.txt").exists():
        candidates.insert(0, root)
    path = next((p for p in candidates if p.exists()), None)
    if path is None:
        raise FileNotFoundError(
            f"tiny-imagenet not found; searched {[str(p) for p in candidates]}. To get it: put "
            f"{TINY_ARCHIVES[0]} (the project's 32 px copy) or {TINY_ARCHIVES[1]} ({TINY_URL}) there and "
            f"point data_dir or $VITLIB_DATA at that folder")
    raw = raw_from_decoded(load_decoded(path, size=size), str(path), "tiny-imagenet", _tiny_layout(path))
    # words.txt (2.6 MB) is too large for the decode cache's texts: read once per archive, remembered
    raw.class_names = memoize("class-names", f"{raw.stats_key}|words.txt",
                              lambda: wordnet_names(read_named_texts(path, "words.txt"), raw.classes))
    return raw


def wordnet_names(words_files: dict[str, str], wnids: list[str]) -> list[str]:
    """A readable name per WordNet id from the text of words.txt (by member name; the shallowest is
    read): the first synonym of the id's line ("n01443537\tgoldfish, Carassius auratus" ->
    "goldfish"), followed by the id where two ids share a name, the id itself where words.txt is
    missing or lacks it."""
    words = {}
    if words_files:
        shallowest = min(words_files, key=lambda name: (name.count("/"), name))
        for line in words_files[shallowest].splitlines():
            wnid, _, synonyms = line.partition("\t")
            words.setdefault(wnid.strip(), synonyms.split(",")[0].strip())
    names = [words.get(wnid) or wnid for wnid in wnids]
    repeated = Counter(names)
    return [f"{name} ({wnid})" if repeated[name] > 1 and name != wnid else name for name, wnid in zip(names, wnids)]


def _tiny_layout(path: Path):
    def parse(names, texts):
        wnids_name = next((n for n in texts if n.split("/")[-1] == "wnids.txt"), None)
        if wnids_name is None:
            raise ValueError(f"{path}: no wnids.txt, not a Tiny-ImageNet layout")
        prefix = wnids_name[: -len("wnids.txt")]
        annotations_name = prefix + "val/val_annotations.txt"
        if annotations_name not in texts:
            raise ValueError(f"{path}: {annotations_name} is missing, so the val images have no labels")
        val_wnid = dict(line.split("\t")[:2] for line in texts[annotations_name].splitlines() if line)
        splits, wnids = [], []
        for name in names:
            parts = name[len(prefix):].split("/") if name.startswith(prefix) else []
            if len(parts) == 4 and parts[0] == "train" and parts[2] == "images":
                splits.append("train"), wnids.append(parts[1])
            elif len(parts) == 3 and parts[:2] == ["val", "images"] and parts[2] in val_wnid:
                splits.append("test"), wnids.append(val_wnid[parts[2]])
            else:  # test/images: unlabelled
                splits.append(None), wnids.append(None)
        return splits, wnids, sorted(texts[wnids_name].split())

    return parse


def load_digits(channels: int = 1) -> RawData:
    """scikit-learn's 1,797 8x8 digits, 0..16 scaled to 0..255, fixed seed-0 80/20 stratified split."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = torch.from_numpy(np.round(digits.images * (255 / 16)).astype(np.uint8))[:, None]  # (N, 1, 8, 8)
    labels = np.asarray(digits.target, dtype=np.int64)
    # The test split must not move with the experiment's seed: it is drawn with seed 0, always.
    ranks = class_ranks(labels, np.random.default_rng([0, 0]))
    test_quota = np.round(0.2 * np.bincount(labels))
    is_test = ranks < test_quota[labels]
    split_index = {"train": torch.from_numpy(np.flatnonzero(~is_test)),
                   "test": torch.from_numpy(np.flatnonzero(is_test))}
    return RawData(torch.from_numpy(labels), split_index, [str(d) for d in range(10)],
                   "sklearn.datasets.load_digits", images=images.expand(-1, channels, -1, -1).contiguous())


def load_fake(seed: int, img_size: int = 32, num_images: int = 256, num_classes: int = 10,
              channels: int = 3) -> RawData:
    """Random images, `num_images` per split. Each class adds its own fixed random pattern to the
    noise (50/50), so a model can learn it: useful for smoke tests of training."""
    patterns = np.random.default_rng([seed, 7]).integers(0, 256, (num_classes, channels, img_size, img_size))
    images, labels, split_index = [], [], {}
    for i, split in enumerate(("train", "test")):
        rng = np.random.default_rng([seed, 8, i])
        y = rng.permutation(np.arange(num_images) % num_classes)
        noise = rng.integers(0, 256, (num_images, channels, img_size, img_size))
        images.append(((patterns[y] + noise) // 2).astype(np.uint8))
        labels.append(y)
        split_index[split] = torch.arange(i * num_images, (i + 1) * num_images)
    return RawData(torch.from_numpy(np.concatenate(labels)).long(), split_index,
                   [f"class_{k}" for k in range(num_classes)], f"fake(seed={seed})",
                   images=torch.from_numpy(np.concatenate(images)))
