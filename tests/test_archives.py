"""`vitlib make-data`: the studies' JPEG archives from small fakes of the official downloads, read
back by vitlib.data as the shared copies are."""
import hashlib
import io
import pickle
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from vitlib.__main__ import main
from vitlib.data import get_dataset
from vitlib.data.archives import make_archive

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def fake_cifar10(path, per_batch=20):
    """cifar-10-python.tar.gz with `per_batch` smooth random images in each of its six batches."""
    rng = np.random.default_rng(0)
    batches = {}
    with tarfile.open(path, "w:gz") as tar:
        def add(name, obj):
            data = pickle.dumps(obj)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        add("batches.meta", {b"label_names": [c.encode() for c in CLASSES]})
        for member in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"):
            coarse = rng.integers(0, 256, (per_batch, 3, 4, 4)).astype(np.uint8)  # smooth: JPEG keeps it
            images = coarse.repeat(8, axis=2).repeat(8, axis=3)
            labels = rng.integers(0, 10, per_batch).tolist()
            batches[member] = (images, labels)
            add(member, {b"data": images.reshape(per_batch, -1), b"labels": labels})
    return batches


def test_cifar10_archive_reads_back_as_the_originals(tmp_path):
    batches = fake_cifar10(tmp_path / "cifar-10-python.tar.gz")
    path, sha256 = make_archive("cifar10", tmp_path / "cifar-10-python.tar.gz", tmp_path / "data")
    assert path == tmp_path / "data" / "cifar10-jpeg.tar.gz" and sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    names = tarfile.open(path).getnames()
    assert names[:2] == ["cifar10", "cifar10/test"] and all(tarfile.open(path).getmember(n).mtime == 0 for n in names)
    for split, members in (("train", [f"data_batch_{i}" for i in range(1, 6)]), ("test", ["test_batch"])):
        ds = get_dataset("cifar10", split, data_dir=tmp_path / "data")
        images = np.concatenate([batches[m][0] for m in members])
        labels = np.concatenate([batches[m][1] for m in members])
        assert ds.classes == CLASSES and len(ds) == len(labels)
        # the archive's order is by class, then by the image's place in the batches
        order = np.lexsort((np.arange(len(labels)), labels))
        assert (ds.labels.numpy() == labels[order]).all()
        # JPEG quality 75 keeps each image closer to its own original than to any other
        got, want = ds.images.numpy().reshape(len(labels), -1).astype(float), images[order].reshape(len(labels), -1)
        distance = np.abs(got[:, None, :] - want[None, :, :]).mean(-1)  # (archive image, original)
        assert (distance.argmin(axis=1) == np.arange(len(labels))).all() and distance.diagonal().mean() < 12
    again = make_archive("cifar10", tmp_path / "cifar-10-python.tar.gz", tmp_path / "again")[1]
    assert again == sha256  # deterministic
    with pytest.raises(ValueError, match="cifar10-jpeg.tar.gz exists; remove it or choose another --out"):
        make_archive("cifar10", tmp_path / "cifar-10-python.tar.gz", tmp_path / "data")


def test_tiny_imagenet_archive_is_the_32px_layout(tmp_path, capsys):
    wnids, rng = ["n01443537", "n01629819"], np.random.default_rng(1)
    source = tmp_path / "tiny-imagenet-200.zip"

    def image():
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, format="JPEG")
        return buffer.getvalue()

    with zipfile.ZipFile(source, "w") as z:
        z.writestr("tiny-imagenet-200/wnids.txt", "\n".join(wnids) + "\n")
        z.writestr("tiny-imagenet-200/words.txt", "".join(f"{w}\tthing {i}\n" for i, w in enumerate(wnids)))
        for w in wnids:
            names = [f"{w}_{i}.JPEG" for i in range(3)]
            z.writestr(f"tiny-imagenet-200/train/{w}/{w}_boxes.txt", "".join(f"{n}\t0\t0\t63\t63\n" for n in names))
            for n in names:
                z.writestr(f"tiny-imagenet-200/train/{w}/images/{n}", image())
        z.writestr("tiny-imagenet-200/val/val_annotations.txt",
                   "".join(f"val_{i}.JPEG\t{wnids[i % 2]}\t0\t0\t63\t63\n" for i in range(4)))
        for i in range(4):
            z.writestr(f"tiny-imagenet-200/val/images/val_{i}.JPEG", image())
    assert main(["make-data", "tiny-imagenet-32", str(source), "--out", str(tmp_path / "data")]) == 0
    assert "wrote" in capsys.readouterr().out
    train = get_dataset("tiny-imagenet", "train", data_dir=tmp_path / "data")
    test = get_dataset("tiny-imagenet", "test", data_dir=tmp_path / "data")
    assert train.images.shape == (6, 3, 32, 32) and test.images.shape == (4, 3, 32, 32)
    assert test.labels.tolist() == [0, 1, 0, 1]


def test_make_data_names_a_missing_download(tmp_path, capsys):
    assert main(["make-data", "cifar10", str(tmp_path / "nothing.tar.gz"), "--out", str(tmp_path)]) == 2
    assert "nothing.tar.gz does not exist: download it first" in capsys.readouterr().err
