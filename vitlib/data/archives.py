"""The JPEG archives the studies read, made from the official downloads.

The studies' results were made from JPEG (quality 75) copies of CIFAR-10 and of Tiny-ImageNet at
32 x 32 px (`cifar10-jpeg.tar.gz`, `tiny-imagenet-32-jpeg.tar.gz`). These functions build archives
of the same layout and encoding from the originals, so that a user with the network can re-make
the inputs of every number:

    python -m vitlib make-data cifar10 cifar-10-python.tar.gz --out data/       # or the extracted folder
    python -m vitlib make-data tiny-imagenet-32 tiny-imagenet-200.zip --out data/

- cifar10: from the official python version (https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz,
  md5 c58f30108f718f92721af3b95e74349a) -> `cifar10/{train,test}/<class>/NNNN.jpg`, NNNN the image's
  index within its class in the batches' order (data_batch_1 ... 5, then test_batch).
- tiny-imagenet-32: from the official zip (http://cs231n.stanford.edu/tiny-imagenet-200.zip,
  md5 90528d7ca1a48142e341f4ef8d21d0de), each 64 px image averaged over 2 x 2 pixel blocks to
  32 px (Pillow's BOX filter) -> `tiny-imagenet-32/{train/<wnid>/images/*.JPEG, val/images/*.JPEG,
  val/val_annotations.txt, wnids.txt, words.txt}`, the box files beside the train images copied
  (their coordinates stay those of the 64 px images); the unlabelled test split is left out.

JPEG quality 75, 4:2:0 chroma subsampling (Pillow's defaults). The archive is deterministic for a
given Pillow and zlib: entries sorted, dates, owners and modes fixed. The shared copies the
studies used were made elsewhere, with another encoder: the same layout, not the same bytes.
"""
import gzip
import hashlib
import io
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np

QUALITY = 75
CIFAR10_MEMBERS = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")
KINDS = ("cifar10", "tiny-imagenet-32")


def make_archive(kind, source, out_dir):
    """Build `<out_dir>/<kind>-jpeg.tar.gz` from the official download `source` (archive or its
    extracted folder); returns (path, sha256). An existing archive is never overwritten."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not supported; allowed: {', '.join(KINDS)}")
    source, out = Path(source), Path(out_dir) / f"{kind}-jpeg.tar.gz"
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist: download it first ({kind}: see vitlib/data/archives.py)")
    if out.exists():
        raise ValueError(f"{out} exists; remove it or choose another --out")
    entries = cifar10_entries(source) if kind == "cifar10" else tiny_imagenet_entries(source)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        folders = set()
        for name, data in sorted(entries.items()):
            for parent in reversed(Path(name).parents[:-1]):  # every folder once, before its files
                if str(parent) not in folders:
                    folders.add(str(parent))
                    tar.addfile(_info(str(parent) + "/", 0, tarfile.DIRTYPE))
            tar.addfile(_info(name, len(data)), io.BytesIO(data))
    tmp.replace(out)
    return out, hashlib.sha256(out.read_bytes()).hexdigest()


def _info(name, size, kind=tarfile.REGTYPE):
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mtime, info.uid, info.gid = size, kind, 0, 0, 0
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info


def jpeg(pixels):
    """(H, W, 3) uint8 -> JPEG bytes at QUALITY."""
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="JPEG", quality=QUALITY)
    return buffer.getvalue()


def _reader(source):
    """name -> bytes of the files of an archive (.tar.gz, .zip) or a folder, by their path below
    its top folder."""
    if source.is_dir():
        return lambda name: (source / name).read_bytes()
    if zipfile.is_zipfile(source):
        archive = zipfile.ZipFile(source)
        top = archive.namelist()[0].split("/")[0]
        return lambda name: archive.read(f"{top}/{name}")
    archive = tarfile.open(source)
    top = archive.getnames()[0].split("/")[0]
    return lambda name: archive.extractfile(f"{top}/{name}").read()


def cifar10_entries(source):
    """{archive path: JPEG bytes} of CIFAR-10's python version."""
    read = _reader(source)
    classes = [c.decode() for c in pickle.loads(read("batches.meta"), encoding="bytes")[b"label_names"]]
    entries, counts = {}, {}
    for member in CIFAR10_MEMBERS:
        batch = pickle.loads(read(member), encoding="bytes")
        split = "test" if member == "test_batch" else "train"
        images = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        for image, label in zip(images, batch[b"labels"]):
            index = counts[split, label] = counts.get((split, label), -1) + 1
            entries[f"cifar10/{split}/{classes[label]}/{index:04d}.jpg"] = jpeg(image)
    return entries


def tiny_imagenet_entries(source):
    """{archive path: bytes} of Tiny-ImageNet-200 at 32 px (train and the labelled val)."""
    from PIL import Image
    read = _reader(source)
    wnids = read("wnids.txt").decode().split()
    entries = {f"tiny-imagenet-32/{name}": read(name) for name in ("wnids.txt", "words.txt", "val/val_annotations.txt")}

    def small(name):
        image = Image.open(io.BytesIO(read(name))).convert("RGB")
        return jpeg(np.asarray(image.resize((32, 32), Image.Resampling.BOX)))

    for wnid in wnids:
        boxes = read(f"train/{wnid}/{wnid}_boxes.txt").decode()
        entries[f"tiny-imagenet-32/train/{wnid}/{wnid}_boxes.txt"] = boxes.encode()
        for line in boxes.splitlines():
            name = line.split("\t")[0]
            entries[f"tiny-imagenet-32/train/{wnid}/images/{name}"] = small(f"train/{wnid}/images/{name}")
    for line in entries["tiny-imagenet-32/val/val_annotations.txt"].decode().splitlines():
        name = line.split("\t")[0]
        entries[f"tiny-imagenet-32/val/images/{name}"] = small(f"val/images/{name}")
    return entries
