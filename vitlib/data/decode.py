"""Read every image of an archive or folder in one pass and decode it to uint8 (C, H, W).

Members are streamed (tar/tar.gz through tarstream.py, zip, or a folder walk), never extracted to
disk. JPEG members go in chunks to `torchvision.io.decode_jpeg` (libjpeg-turbo, pixel-identical to
PIL on the project's archives and ~3x faster on 32 px images, checked in tests/test_data.py);
everything else, and any chunk torchvision rejects, is decoded by PIL, whose error names the
member. Chunks are decoded in a thread pool while the archive is still being read.
"""
import io
import os
import warnings
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vitlib.data.augment import resize_images
from vitlib.data.tarstream import iter_tar

try:  # optional fast path; PIL alone gives the same pixels
    from torchvision.io import ImageReadMode, decode_jpeg
except ImportError:  # pragma: no cover - torchvision is a dependency, but keep PIL-only working
    decode_jpeg = None

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
TEXT_SUFFIXES = (".txt", ".csv", ".json")
MAX_TEXT_BYTES = 1 << 20  # class lists and annotations are small; skip anything bigger
MAX_NAMED_TEXT_BYTES = 64 << 20  # read_named_texts: one named file, read on its own
CHUNK = 512  # images per decode task


def decode_all(path: Path, size: int | None):
    """Stream the members once; decode image chunks in a thread pool as they arrive."""
    names, futures, texts, chunk = [], [], {}, []
    workers = min(8, os.cpu_count() or 2)
    # torchvision >= 0.29 warns on every decode that its decoders are deprecated (PIL takes over
    # when they are gone); only this thread changes the filters, the pool ends inside the block.
    with warnings.catch_warnings(), ThreadPoolExecutor(workers) as pool:
        warnings.filterwarnings("ignore", message=".*image decoding", category=DeprecationWarning)
        try:
            for name, data in _iter_members(path):
                if name.lower().endswith(TEXT_SUFFIXES):
                    texts[name] = data.decode("utf-8", errors="replace")
                    continue
                names.append(name)
                chunk.append((name, data))
                if len(chunk) == CHUNK:
                    futures.append(pool.submit(_decode_chunk, chunk, path))
                    chunk = []
        except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as err:
            raise ValueError(f"{path} is not a readable archive (corrupted or truncated): {err}") from err
        if chunk:
            futures.append(pool.submit(_decode_chunk, chunk, path))
        chunks = [future.result() for future in futures]
    if not chunks:
        raise ValueError(f"{path} holds no images (looked for {', '.join(IMAGE_SUFFIXES)})")
    if all(isinstance(c, torch.Tensor) and c.shape[1:] == chunks[0].shape[1:] for c in chunks):
        return names, torch.cat(chunks), texts, True
    decoded = [image for chunk in chunks for image in chunk]
    images, uniform = _stack(decoded, names, path, size)
    return names, images, texts, uniform


def _stack(decoded: list[torch.Tensor], names: list[str], path: Path, size: int | None):
    """One (N, C, H, W) tensor from images of mixed sizes or channels: grey images become RGB
    when the archive mixes both; mixed sizes need `size`."""
    sizes = [tuple(image.shape[1:]) for image in decoded]
    uniform = len(set(sizes)) == 1
    if not uniform:
        if size is None:
            other = next(i for i, s in enumerate(sizes) if s != sizes[0])
            raise ValueError(
                f"images in {path} have different sizes ({names[0]!r} is {sizes[0]}, "
                f"{names[other]!r} is {sizes[other]}): pass img_size=... to resize them on decoding")
        decoded = [img if img.shape[1:] == (size, size) else resize_images(img[None], size)[0]
                   for img in decoded]
    if max(image.shape[0] for image in decoded) == 3:
        decoded = [image if image.shape[0] == 3 else image.expand(3, -1, -1) for image in decoded]
    return torch.stack(decoded), uniform


def _decode_chunk(items: list[tuple[str, bytes]], path: Path):
    """(n, C, H, W) uint8 when the chunk's images share a shape (the usual case), else a list."""
    images = decode_images(items, path)
    if all(image.shape == images[0].shape for image in images):
        return torch.stack(images)
    return images


def decode_images(items: list[tuple[str, bytes]], path: Path) -> list[torch.Tensor]:
    out = [None] * len(items)
    jpegs = [i for i, (_, data) in enumerate(items) if data[:2] == b"\xff\xd8"]
    if decode_jpeg is not None and jpegs:
        try:
            blobs = [torch.frombuffer(bytearray(items[i][1]), dtype=torch.uint8) for i in jpegs]
            for i, image in zip(jpegs, decode_jpeg(blobs, mode=ImageReadMode.UNCHANGED)):
                if image.shape[0] in (1, 3):  # CMYK and friends go to PIL
                    out[i] = image
        except (RuntimeError, TypeError, ValueError):
            pass  # a bad member somewhere in the chunk: PIL finds it and names it
    return [image if image is not None else decode_pil(*items[i], path) for i, image in enumerate(out)]


GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")  # PIL modes decoded to one channel


def decode_pil(name: str, data: bytes, path: Path) -> torch.Tensor:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.mode not in ("L", "RGB"):
                image = image.convert("L" if image.mode in GREY_MODES else "RGB")
            array = np.asarray(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot decode image {name!r} in {path}: {err}") from err
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1)  # (C, H, W)


def _wanted(name: str, size: int) -> bool:
    lower = name.lower()
    return lower.endswith(IMAGE_SUFFIXES) or (lower.endswith(TEXT_SUFFIXES) and size <= MAX_TEXT_BYTES)


def _iter_members(path: Path, wanted=_wanted):
    """(name, bytes) of the members `wanted(name, size)` keeps (image and small text members), in
    archive order."""
    if path.is_dir():
        for file in list_folder(path, wanted):
            yield file.relative_to(path).as_posix(), file.read_bytes()
        return
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic.startswith(b"PK"):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.is_dir() and wanted(info.filename, info.file_size):
                    yield info.filename, archive.read(info)
        return
    yield from iter_tar(path, gzipped=magic[:2] == b"\x1f\x8b", wanted=wanted)


def read_named_texts(path: Path, file_name: str) -> dict[str, str]:
    """The text of every member called `file_name`, at any depth, of an archive or folder, by member
    name: for a text file too large for the decode cache's small texts (Tiny-ImageNet's words.txt,
    2.6 MB). One pass over the archive."""
    wanted = lambda name, size: name.split("/")[-1] == file_name and size <= MAX_NAMED_TEXT_BYTES  # noqa: E731
    try:
        return {name: data.decode("utf-8", errors="replace") for name, data in _iter_members(path, wanted)}
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not a readable archive (corrupted or truncated): {err}") from err


def list_folder(root: Path, wanted=_wanted) -> list[Path]:
    files = []
    for folder, subdirs, filenames in os.walk(root):
        subdirs.sort()
        for filename in sorted(filenames):
            file = Path(folder) / filename
            if wanted(filename, file.stat().st_size):
                files.append(file)
    return files
