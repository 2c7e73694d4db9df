"""Decode an image archive (or an extracted folder) once into a cached uint8 tensor.

`load_decoded(path)` decodes every image of a `.tar`/`.tar.gz`/`.zip` or folder (see decode.py)
and stores all of them, with their member names and the small text files beside them
(annotations, class lists), in `<cache dir>/<key>.pt`. The key is the archive's file name + size +
sha256 (for a folder: a hash of its file listing), so a changed archive is decoded again and an
unchanged one is only loaded: the second load is a memory map of that file.

The cache dir is `$VITLIB_CACHE`, else `~/.cache/vitlib/decoded`; the data itself may sit on a
read-only disk. Writes are atomic (temp file + os.replace), so concurrent runs never see half a
file, and a lock file makes concurrent processes (the ranks of one job) decode an archive once.

Every cache file carries the sha256 of its content (`save_checked`), checked on every load: a
file damaged on disk (flipped bytes in the pixels or in the labels) is built again with a warning
naming it, never used. Hashing costs ~0.15 s per 180 MB (CIFAR-10's 60,000 images) per load.
A cache file written before files carried a checksum is treated as damaged: built again once.
"""
import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from vitlib.data.decode import decode_all, list_folder
from vitlib.fileio import atomic_write, file_lock

CACHE_FORMAT = 2  # bump to invalidate every cache file when the stored layout changes


@dataclass
class DecodedArchive:
    names: list[str]  # image member names, sorted ("cifar10/train/cat/0001.jpg")
    images: torch.Tensor  # (N, C, H, W) uint8
    texts: dict[str, str]  # small text members by name
    key: str  # cache file stem: identifies exactly what was decoded


def cache_dir() -> Path:
    return Path(os.environ.get("VITLIB_CACHE") or Path.home() / ".cache" / "vitlib" / "decoded")


def memoize(table: str, key: str, compute):
    """Return `compute()`, remembered in `<cache dir>/<table>.json` under `key` (JSON values)."""
    path = cache_dir() / f"{table}.json"
    try:
        memo = json.loads(path.read_text())
    except (OSError, ValueError):
        memo = {}
    if key not in memo:
        memo[key] = compute()
        atomic_write(path, lambda f: f.write(json.dumps(memo, indent=1).encode()))
    return memo[key]


def memoize_file(name: str, compute) -> dict:
    """Return `compute()` (a dict of tensors, lists, str), remembered as `<cache dir>/<name>.pt`."""
    path = cache_dir() / f"{name}.pt"
    value = load_checked(path)
    if value is None:
        value = compute()
        save_checked(path, value)
    return value


def content_sha256(value) -> str:
    """sha256 of what a cache file holds: tensors by dtype, shape and bytes; dicts, lists, str and
    numbers by their structure and values."""
    digest = hashlib.sha256()

    def add(item):
        if isinstance(item, torch.Tensor):
            item = item.detach().cpu().contiguous()
            digest.update(f"tensor {item.dtype} {tuple(item.shape)}\0".encode())
            digest.update(item.reshape(-1).view(torch.uint8).numpy())
        elif isinstance(item, dict):
            digest.update(f"dict {len(item)}\0".encode())
            for key, entry in item.items():
                add(key)
                add(entry)
        elif isinstance(item, (list, tuple)):
            digest.update(f"list {len(item)}\0".encode())
            for entry in item:
                add(entry)
        else:  # str, int, float, bool, None: the repr is unambiguous
            digest.update(f"{type(item).__name__} {item!r}\0".encode())

    add(value)
    return digest.hexdigest()


def save_checked(path: Path, value: dict):
    """Write the dict `value` to `path` (atomically) with the sha256 of its content."""
    atomic_write(path, lambda f: torch.save({**value, "sha256": content_sha256(value)}, f))


def load_checked(path: Path, *, mmap: bool = False) -> dict | None:
    """What save_checked wrote to `path`, or None: silently when there is no such file, with a
    one-line warning naming it when it is unreadable, has no checksum or does not match it
    (the caller then builds it again)."""
    if not path.exists():
        return None
    try:
        value = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        stored = value.pop("sha256", None)
    except Exception as err:  # truncated, garbled header, not a dict, written by another torch
        problem = f"is unreadable ({type(err).__name__})"
    else:
        if stored is None:
            problem = "has no checksum (written by an older vitlib)"
        elif stored != content_sha256(value):
            problem = "does not match its checksum (damaged on disk)"
        else:
            return value
    warnings.warn(f"cache file {path} {problem}: building it again", stacklevel=3)
    return None


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so an unchanged file is hashed once.

    A file modified in the last few seconds is hashed every time: file-system timestamps are
    coarse, so a quick rewrite of the same size could otherwise keep a stale hash (git's "racily
    clean" problem).
    """
    st = path.stat()

    def compute():
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        return digest.hexdigest()

    if time.time() - st.st_mtime < 5:
        return compute()
    return memoize("sha256", f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}", compute)


def archive_key(path: Path) -> str:
    """Cache key: file name + size + sha256 prefix, or for a folder a hash of its file listing."""
    if path.is_dir():
        listing = hashlib.sha256()
        for file in list_folder(path):
            st = file.stat()
            listing.update(f"{file.relative_to(path)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        return f"{path.name}-dir-{listing.hexdigest()[:16]}-v{CACHE_FORMAT}"
    return f"{path.name}-{path.stat().st_size}-{file_sha256(path)[:16]}-v{CACHE_FORMAT}"


def load_decoded(path, *, size: int | None = None) -> DecodedArchive:
    """All images of an archive or folder as one uint8 tensor, decoded once and then cached.

    Images must share one size, unless `size` is given: then an archive of mixed sizes is
    resized to (size, size) while decoding (and cached under a key that includes the size).
    Processes that ask for the same archive at once (the ranks of one job) decode it once: the
    others wait on a lock file and then load the cache.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no archive or folder at {path}")
    key = archive_key(path)
    stems = (key, f"{key}-s{size}") if size else (key,)
    looked_at = {stem: _file_identity(stem) for stem in stems}
    cached = next(filter(None, map(_load_cache, stems)), None)
    if cached is not None:
        return cached
    with file_lock(cache_dir() / f"{key}.lock"):
        # another process may have written the cache while this one waited: load what changed
        changed = [stem for stem in stems if _file_identity(stem) != looked_at[stem]]
        cached = next(filter(None, map(_load_cache, changed)), None)
        if cached is not None:
            return cached
        names, images, texts, uniform = decode_all(path, size)
        # Stored in name order, so a split (one folder) is one contiguous range: loading it later
        # is a slice of the memory map, not a gather.
        order = sorted(range(len(names)), key=names.__getitem__)
        if order != list(range(len(names))):
            names, images = [names[i] for i in order], images.index_select(0, torch.tensor(order))
        stem = key if uniform else f"{key}-s{size}"
        # Names as one string: the weights-only unpickler is slow on 100,000 separate strings.
        blob = {"format": CACHE_FORMAT, "source": str(path), "names": "\0".join(names), "images": images,
                "texts": texts}
        save_checked(cache_dir() / f"{stem}.pt", blob)
    return DecodedArchive(names, images, texts, stem)


def _file_identity(stem: str):
    """(inode, size, mtime) of a cache file, None if there is none: tells a rewritten file apart."""
    try:
        st = (cache_dir() / f"{stem}.pt").stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _load_cache(stem: str) -> DecodedArchive | None:
    # a memory map: the checksum reads every page once, the OS keeps them for the next load
    blob = load_checked(cache_dir() / f"{stem}.pt", mmap=True)
    if blob is None or blob.get("format") != CACHE_FORMAT:
        return None
    return DecodedArchive(blob["names"].split("\0"), blob["images"], blob["texts"], stem)


