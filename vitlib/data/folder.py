"""Any <split>/<class>/<image> tree: decoded into memory (through the cache), or read lazily.

The in-memory path takes a folder, a .tar(.gz) or a .zip; `FolderDataset` (in_memory=False) takes
an extracted folder only, because a gzip stream has no random access. Classes are the sorted class
folder names over all splits, so every split shares one label index.
"""
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vitlib.data.augment import resize_images
from vitlib.data.cache import archive_key, load_decoded, memoize
from vitlib.data.decode import GREY_MODES, IMAGE_SUFFIXES, decode_pil, list_folder
from vitlib.data.sources import RawData, folder_layout, raw_from_decoded, raw_from_members, split_class_layout

STATS_SAMPLE = 1000  # images decoded to estimate a lazy folder's mean/std


def load_imagefolder(data_dir, *, in_memory: bool = True, img_size: int | None = None) -> RawData:
    if data_dir is None:
        raise ValueError("imagefolder needs data_dir=<root of a <split>/<class>/<image> tree, or its .tar.gz/.zip>")
    path = Path(data_dir).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"imagefolder: nothing at data_dir={str(path)!r}; "
                                "point it at the tree root or the archive")
    if in_memory:
        return raw_from_decoded(load_decoded(path, size=img_size), str(path), "split-class", folder_layout(path))
    if not path.is_dir():
        raise ValueError(f"in_memory=False reads an extracted folder; {path} is a file: extract it, "
                         f"or load it with in_memory=True")
    files = [f for f in list_folder(path) if f.name.lower().endswith(IMAGE_SUFFIXES)]  # the in-memory walk
    if not files:
        raise ValueError(f"{path} holds no images (looked for {', '.join(IMAGE_SUFFIXES)})")
    names = [f.relative_to(path).as_posix() for f in files]
    splits, class_names = split_class_layout(names, path)
    raw = raw_from_members(names, splits, class_names, sorted(set(class_names)), str(path),
                           paths=[str(f) for f in files])
    raw.stats_key = archive_key(path)
    return raw


def folder_channels(raw: RawData) -> int:
    """The in-memory rule for a lazy folder: 1 channel when every image is grey, else 3 (grey
    images become RGB beside colour ones). Read from the image headers, remembered on disk."""
    def compute():
        for file in raw.paths:
            try:
                with Image.open(file) as image:
                    if image.mode not in GREY_MODES:
                        return 3
            except (OSError, SyntaxError, ValueError) as err:
                raise ValueError(f"cannot decode image {file}: {err}") from err
        return 1

    return memoize("stats", f"{raw.stats_key}|channels", compute)


class FolderDataset(torch.utils.data.Dataset):
    """Images decoded from disk one at a time (PIL, RGB), for folders larger than memory.

    `dataset[i]` -> (uint8 (3, H, W) tensor, int label); with `img_size` every image is resized to
    (img_size, img_size), which batching needs when the images differ in size. Same `classes`,
    `class_names`, `mean`, `std` as an ImageDataset; use it through `BatchStream`, which wraps it in
    a DataLoader.
    """

    def __init__(self, paths, labels, classes, mean, std, name, img_size=None, split="", source="", channels=3,
                 class_names=None):
        self.paths, self.labels = list(paths), torch.as_tensor(labels, dtype=torch.int64)
        self.classes, self.mean, self.std, self.name = list(classes), tuple(mean), tuple(std), name
        self.class_names = list(self.classes if class_names is None else class_names)
        self.img_size, self.split, self.source, self.channels = img_size, split, source, channels

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __getitem__(self, i: int):
        return read_image(self.paths[i], self.img_size, self.channels), int(self.labels[i])


def read_image(path: str, img_size: int | None = None, channels: int = 3) -> torch.Tensor:
    """One image file as the in-memory path decodes it (decode.decode_pil): (channels, H, W) uint8."""
    path = Path(path)
    try:
        image = decode_pil(path.name, path.read_bytes(), path.parent)  # (1 or 3, H, W)
    except ValueError as err:  # PIL's own reason names a BytesIO object, not the file
        if isinstance(err.__cause__, Image.DecompressionBombError):  # an image, but too large to open safely
            raise ValueError(f"{path} is too large for Pillow to open safely: {err.__cause__} (Pillow's "
                             "decompression-bomb guard); resize it to a few megapixels first") from None
        raise ValueError(f"{path} is not an image file vitlib can decode ({', '.join(IMAGE_SUFFIXES)})") from None
    if image.shape[0] != channels and channels == 1:  # colour for a grey model: Pillow's "L" (ITU-R 601-2 luma)
        luma = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
        image = (image.float() * luma).sum(0, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    elif image.shape[0] != channels:  # grey for a colour model: the grey value in every channel
        image = image.expand(channels, -1, -1).contiguous()
    return resize_images(image[None], img_size)[0] if img_size else image


def image_batch(path, like) -> torch.Tensor:
    """An image file as a model input like the images of data set `like` (an ImageDataset or
    FolderDataset): decoded as the data sets decode, with their channel count, resized to their
    size as they were, normalised with their mean and std; (1, C, H, W) float."""
    from vitlib.data.augment import normalize

    if hasattr(like, "images"):
        channels, size = like.images.shape[1], like.images.shape[-1]
    else:
        channels, size = like.channels, like.img_size
    return normalize(read_image(path, size, channels)[None], like.mean, like.std)


def estimate_stats(raw: RawData, img_size: int | None) -> tuple[tuple, tuple]:
    """Mean/std of a lazy folder from a fixed sample of its train images, remembered on disk."""

    channels = folder_channels(raw)

    def compute():
        train = raw.split_index.get("train", torch.arange(len(raw.labels)))
        sample = np.random.default_rng(0).permutation(len(train))[:STATS_SAMPLE]
        total, square, count = 0, 0, 0
        for i in sample:
            x = read_image(raw.paths[int(train[i])], img_size, channels).double() / 255  # (C, H, W)
            total, square = total + x.sum((1, 2)), square + (x * x).sum((1, 2))
            count += x[0].numel()
        mean = total / count
        return [mean.tolist(), (square / count - mean**2).sqrt().tolist()]

    mean, std = memoize("stats", f"{raw.stats_key}|lazy-train-sample|{img_size}", compute)
    return tuple(mean), tuple(std)
