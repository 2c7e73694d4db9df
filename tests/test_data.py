"""get_dataset and the decode cache: small datasets built in tmp_path, plus the shared real archives."""
import io
import os
import pickle
import tarfile
import time
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from vitlib.data import FolderDataset, get_dataset, image_batch, normalize
from vitlib.data import cache as cache_module
from vitlib.data import decode as decode_module

# the real archives (cifar10-jpeg.tar.gz, tiny-imagenet-32-jpeg.tar.gz): VITLIB_SHARED_DATA, else
# ../shared/data beside the checkout; the tests that need them are skipped without them
SHARED = Path(os.environ.get("VITLIB_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VITLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("VITLIB_DATA", raising=False)


def rows(images: torch.Tensor) -> list[bytes]:
    """Images as sortable byte strings, to compare datasets as multisets."""
    return sorted(image.numpy().tobytes() for image in images)


# ---------------------------------------------------------------- digits, fake

def test_digits_shapes_split_and_pixels():
    from sklearn.datasets import load_digits

    train, test = get_dataset("digits", "train"), get_dataset("digits", "test")
    assert train.images.shape == (len(train), 1, 16, 16) and train.images.dtype == torch.uint8
    assert len(train) + len(test) == 1797 and train.classes == [str(d) for d in range(10)]
    counts = np.bincount(load_digits().target)
    assert test.labels.bincount().tolist() == np.round(0.2 * counts).astype(int).tolist()  # stratified 20 %
    # At the native 8 px the pixels are exactly sklearn's 0..16 scaled to 0..255.
    native = [get_dataset("digits", s, img_size=8) for s in ("train", "test")]
    expected = torch.from_numpy(np.round(load_digits().images * 255 / 16).astype(np.uint8))[:, None]
    assert rows(torch.cat([d.images for d in native])) == rows(expected)
    assert native[0].mean[0] == pytest.approx(native[0].images.double().mean().item() / 255)
    assert native[0].std[0] == pytest.approx(native[0].images.double().std(unbiased=False).item() / 255)
    # The test split is fixed, whatever the experiment seed.
    assert torch.equal(get_dataset("digits", "test", seed=3).images, test.images)


def test_digits_resize_matches_pil_and_channels():
    small = get_dataset("digits", "test", img_size=8)
    big = get_dataset("digits", "test", img_size=24, channels=3)
    assert big.images.shape[1:] == (3, 24, 24) and torch.equal(big.images[:, 0], big.images[:, 2])
    pil = torch.stack([torch.from_numpy(np.array(Image.fromarray(im[0].numpy()).resize((24, 24), Image.BILINEAR)))
                       for im in small.images[:50]])
    assert (big.images[:50, 0].int() - pil.int()).abs().max() <= 1  # an independent bilinear


def test_train_size_is_balanced_seeded_and_nested():
    sub = get_dataset("digits", "train", train_size=55, seed=1)
    assert len(sub) == 55 and set(sub.labels.bincount().tolist()) == {5, 6}
    assert torch.equal(sub.images, get_dataset("digits", "train", train_size=55, seed=1).images)
    assert not torch.equal(sub.images, get_dataset("digits", "train", train_size=55, seed=2).images)
    bigger = get_dataset("digits", "train", train_size=110, seed=1)
    assert set(rows(sub.images)) <= set(rows(bigger.images))
    with pytest.raises(ValueError, match=r"train_size=5000 exceeds the \d+ training"):
        get_dataset("digits", "train", train_size=5000)
    with pytest.raises(ValueError, match="train_size=5 is below num_classes=10"):
        get_dataset("digits", "train", train_size=5)


def test_val_fraction_partitions_train():
    full = get_dataset("digits", "train")
    train = get_dataset("digits", "train", val_fraction=0.1, seed=4)
    val = get_dataset("digits", "val", val_fraction=0.1, seed=4)
    assert len(train) + len(val) == len(full)
    assert rows(torch.cat([train.images, val.images])) == rows(full.images)  # a partition
    assert val.labels.bincount().tolist() == np.round(0.1 * full.labels.bincount().numpy()).astype(int).tolist()
    assert not torch.equal(val.images, get_dataset("digits", "val", val_fraction=0.1, val_seed=5).images)
    assert train.mean == full.mean  # normalisation does not move with the held-out part


def test_val_size_holds_out_a_number_of_images():
    full = get_dataset("digits", "train")
    val = get_dataset("digits", "val", val_size=144)
    assert abs(len(val) - 144) <= 10 and len(get_dataset("digits", "train", val_size=144)) == len(full) - len(val)
    with pytest.raises(ValueError, match="pass val_fraction=0.1 or val_size=100, not both"):
        get_dataset("digits", "train", val_fraction=0.1, val_size=100)
    with pytest.raises(ValueError, match=f"val_size={len(full)} leaves no training images"):
        get_dataset("digits", "train", val_size=len(full))


def test_val_split_is_fixed_across_training_seeds_and_sizes():
    """One validation set for every run of a study: the training seed and size draw only from the rest."""
    val = get_dataset("digits", "val", val_fraction=0.1, seed=0)
    assert torch.equal(val.images, get_dataset("digits", "val", val_fraction=0.1, seed=3).images)
    held = set(rows(val.images))
    for seed, size in ((0, None), (1, None), (1, 200), (2, 500)):
        train = get_dataset("digits", "train", val_fraction=0.1, seed=seed, train_size=size)
        assert not held & set(rows(train.images))


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="mnist", split="train"), r"unknown dataset 'mnist'; allowed: \('cifar10'"),
    (dict(name="digits", split="dev"), r"unknown split 'dev' .* allowed: \('train', 'val', 'test'\)"),
    (dict(name="digits", split="val"), "no split 'val' of its own: pass val_fraction"),
    (dict(name="digits", split="train", val_fraction=1.0), r"val_fraction=1.0; must be in \[0, 1\)"),
    (dict(name="digits", split="train", img_size=0), "img_size=0"),
    (dict(name="digits", split="train", colour=True),
     r"unknown option\(s\) \['colour'\] for digits; allowed: \['channels'\]"),
    (dict(name="digits", split="train", channels=2), r"channels=2; allowed: \(1, 3\)"),
    (dict(name="fake", split="train", num_images=0), "num_images=0"),
    (dict(name="imagefolder", split="train"), "imagefolder needs data_dir"),
])
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        get_dataset(**kwargs)


def test_fake_is_deterministic_and_learnable():
    a = get_dataset("fake", "train", seed=3, num_images=40, num_classes=4, img_size=12)
    assert a.images.shape == (40, 3, 12, 12) and a.labels.bincount().tolist() == [10] * 4
    assert torch.equal(a.images, get_dataset("fake", "train", seed=3, num_images=40, num_classes=4, img_size=12).images)
    assert not torch.equal(a.images,
                           get_dataset("fake", "train", seed=4, num_images=40, num_classes=4, img_size=12).images)
    test = get_dataset("fake", "test", seed=3, num_images=40, num_classes=4, img_size=12)
    assert not torch.equal(a.images, test.images)
    # Class means of train predict test labels: the class pattern is shared by both splits.
    centroids = torch.stack([a.images[a.labels == k].float().mean(0) for k in range(4)])
    nearest = torch.cdist(test.images.flatten(1).float(), centroids.flatten(1)).argmin(1)
    assert (nearest == test.labels).float().mean() > 0.9


# ---------------------------------------------------------------- image folders and archives

def random_image(rng, size=(8, 8), mode="RGB") -> Image.Image:
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)


def make_tree(root: Path, rng, per_class=3, classes=("dog", "cat", "bird"), splits=("train", "test"),
              mode="RGB") -> Path:
    for split in splits:
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                random_image(rng, mode=mode).save(root / split / c / f"{i}.png")
    return root


def make_tar(tree: Path, out: Path, top="data", fmt=tarfile.PAX_FORMAT) -> Path:
    with tarfile.open(out, "w:gz", format=fmt) as tar:
        tar.add(tree, arcname=top)
    return out


def make_zip(tree: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w") as z:
        for file in sorted(tree.rglob("*")):
            z.write(file, file.relative_to(tree).as_posix())
    return out


def test_imagefolder_tree_targz_zip_agree(tmp_path):
    tree = make_tree(tmp_path / "tree", np.random.default_rng(0))
    # A long member path exercises the pax / GNU long-name headers of the tar reader.
    long_dir = tree / "train" / "cat"
    random_image(np.random.default_rng(1)).save(long_dir / ("x" * 120 + ".png"))
    loads = [get_dataset("imagefolder", "train", path) for path in (
        tree, make_tar(tree, tmp_path / "a.tar.gz"), make_tar(tree, tmp_path / "g.tar.gz", fmt=tarfile.GNU_FORMAT),
        make_zip(tree, tmp_path / "a.zip"))]
    for d in loads:
        assert d.classes == ["bird", "cat", "dog"] and len(d) == 10
        assert torch.equal(d.images, loads[0].images) and torch.equal(d.labels, loads[0].labels)
    # PNG is lossless: the first "bird" image is exactly what was saved.
    saved = np.array(Image.open(tree / "train" / "bird" / "0.png"))
    assert torch.equal(loads[0].images[0], torch.from_numpy(saved).permute(2, 0, 1))
    assert loads[0].labels.bincount().tolist() == [3, 4, 3]
    assert len(get_dataset("imagefolder", "test", tree)) == 9
    with pytest.raises(ValueError, match=r"no split 'val'.*available: \['test', 'train'\]"):
        get_dataset("imagefolder", "val", tree)


def test_truncated_image_is_named(tmp_path):
    tree = make_tree(tmp_path / "tree", np.random.default_rng(0))
    buffer = io.BytesIO()
    random_image(np.random.default_rng(1), (16, 16)).save(buffer, "JPEG")
    (tree / "train" / "dog" / "broken.jpg").write_bytes(buffer.getvalue()[:200])
    for path in (tree, make_tar(tree, tmp_path / "t.tar.gz")):
        with pytest.raises(ValueError, match="broken.jpg"):
            get_dataset("imagefolder", "train", path)


def test_corrupt_archives_raise_naming_the_file(tmp_path):
    tree = make_tree(tmp_path / "tree", np.random.default_rng(0))
    good = make_tar(tree, tmp_path / "good.tar.gz").read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(good[: len(good) // 2])
    (tmp_path / "noise.tar.gz").write_bytes(np.random.default_rng(0).bytes(5000))
    (tmp_path / "noise.zip").write_bytes(b"PK\x03\x04" + np.random.default_rng(0).bytes(5000))
    bad_gzip = bytearray(good)
    bad_gzip[len(good) // 2:len(good) // 2 + 64] = bytes(64)
    (tmp_path / "flipped.tar.gz").write_bytes(bytes(bad_gzip))
    for name in ("cut.tar.gz", "noise.tar.gz", "noise.zip", "flipped.tar.gz"):
        with pytest.raises(ValueError, match=name):
            get_dataset("imagefolder", "train", tmp_path / name)


def test_mixed_sizes_and_grey(tmp_path):
    tree = make_tree(tmp_path / "tree", np.random.default_rng(0))
    random_image(np.random.default_rng(1), (12, 10)).save(tree / "train" / "cat" / "big.png")
    random_image(np.random.default_rng(2), mode="L").save(tree / "train" / "dog" / "grey.png")
    with pytest.raises(ValueError, match="different sizes.*img_size"):
        get_dataset("imagefolder", "train", tree)
    d = get_dataset("imagefolder", "train", tree, img_size=8)
    assert d.images.shape == (11, 3, 8, 8)
    grey = d.images[-1]  # dog/grey.png sorts last
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])


def test_folder_dataset_matches_in_memory(tmp_path):
    tree = make_tree(tmp_path / "tree", np.random.default_rng(0))
    memory = get_dataset("imagefolder", "train", tree)
    lazy = get_dataset("imagefolder", "train", tree, in_memory=False)
    assert isinstance(lazy, FolderDataset) and lazy.classes == memory.classes and len(lazy) == len(memory)
    for i in range(len(lazy)):
        image, label = lazy[i]
        assert torch.equal(image, memory.images[i]) and label == memory.labels[i]
    assert lazy.mean == pytest.approx(memory.mean) and lazy.std == pytest.approx(memory.std)
    with pytest.raises(ValueError, match="extract it"):
        get_dataset("imagefolder", "train", make_tar(tree, tmp_path / "a.tar.gz"), in_memory=False)


@pytest.mark.parametrize("grey", ["all", "some"])
def test_folder_dataset_channels_match_in_memory(tmp_path, grey):
    """All-grey folders are one channel both ways; a grey image among colour ones becomes RGB."""
    tree = make_tree(tmp_path / "tree", np.random.default_rng(0), mode="L")
    if grey == "some":
        random_image(np.random.default_rng(1)).save(tree / "train" / "cat" / "0.png")
    memory = get_dataset("imagefolder", "train", tree)
    lazy = get_dataset("imagefolder", "train", tree, in_memory=False)
    assert memory.images.shape[1] == lazy.channels == (1 if grey == "all" else 3)
    for i in range(len(lazy)):
        assert torch.equal(lazy[i][0], memory.images[i])


def test_image_batch_is_the_data_sets_image(tmp_path):
    """An image file given to predict/attention is decoded, resized and normalised as the data set's."""
    tree = make_tree(tmp_path / "tree", np.random.default_rng(0))
    for in_memory in (True, False):
        data = get_dataset("imagefolder", "train", tree, img_size=4, in_memory=in_memory)
        expected = normalize(get_dataset("imagefolder", "train", tree, img_size=4).images[:1], data.mean, data.std)
        assert torch.allclose(image_batch(tree / "train" / "bird" / "0.png", data), expected)


# ---------------------------------------------------------------- the cache

def test_cache_is_reused_and_keyed_by_checksum(tmp_path, monkeypatch):
    tree = make_tree(tmp_path / "tree", np.random.default_rng(0))
    archive = make_tar(tree, tmp_path / "data.tar.gz")
    first = get_dataset("imagefolder", "train", archive)
    cached = list((tmp_path / "cache").glob(f"data.tar.gz-*-v{cache_module.CACHE_FORMAT}.pt"))
    assert len(cached) == 1 and not list((tmp_path / "cache").glob("*.tmp"))
    calls = []
    real_decode = cache_module.decode_all
    monkeypatch.setattr(cache_module, "decode_all", lambda *a: calls.append(a) or real_decode(*a))
    assert torch.equal(get_dataset("imagefolder", "train", archive).images, first.images) and not calls
    # Same file name, new content: decoded again, and the new pixels come back.
    random_image(np.random.default_rng(9)).save(tree / "train" / "bird" / "0.png")
    make_tar(tree, archive)
    changed = get_dataset("imagefolder", "train", archive)
    assert len(calls) == 1 and not torch.equal(changed.images[0], first.images[0])
    assert torch.equal(changed.images[1:], first.images[1:])


def test_concurrent_loads_decode_once(tmp_path, monkeypatch):
    import threading

    archive = make_tar(make_tree(tmp_path / "tree", np.random.default_rng(0)), tmp_path / "data.tar.gz")
    calls = []
    real_decode = cache_module.decode_all
    monkeypatch.setattr(cache_module, "decode_all", lambda *a: calls.append(a) or time.sleep(0.5) or real_decode(*a))
    results = []
    threads = [threading.Thread(target=lambda: results.append(cache_module.load_decoded(archive))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and torch.equal(results[0].images, results[1].images)


def garble(file: Path, original: bytes, replacement: bytes):
    """Overwrite the one place in `file` that holds `original` with `replacement`: a damaged
    cache file that still parses (only its content differs)."""
    data = file.read_bytes()
    assert data.count(original) == 1 and len(replacement) == len(original)
    file.write_bytes(data.replace(original, replacement))


def test_garbled_cache_files_are_rebuilt_with_a_warning(tmp_path, monkeypatch):
    archive = make_tar(make_tree(tmp_path / "tree", np.random.default_rng(0)), tmp_path / "data.tar.gz")
    first = get_dataset("imagefolder", "train", archive)
    images, labels = first.images.clone(), first.labels.clone()  # the cache is memory-mapped: copy
    cache = tmp_path / "cache"
    (image_file,) = cache.glob(f"*-v{cache_module.CACHE_FORMAT}.pt")
    (label_file,) = cache.glob("*.split-class.pt")
    calls = []
    real_decode = cache_module.decode_all
    monkeypatch.setattr(cache_module, "decode_all", lambda *a: calls.append(a) or real_decode(*a))

    # 64 bytes in the middle of the pixels
    middle = images.numpy().tobytes()[1000:1064]
    garble(image_file, middle, bytes(255 - b for b in middle))
    with pytest.warns(UserWarning, match=f"{image_file}.*checksum"):
        again = get_dataset("imagefolder", "train", archive)
    assert torch.equal(again.images, images) and torch.equal(again.labels, labels) and len(calls) == 1

    # one label (int64) changed: every image of the split would still load, relabelled
    parsed = torch.load(label_file, weights_only=True)
    stored, first_train = parsed["labels"], parsed["split_index"]["train"][0]
    changed = stored.clone()
    changed[first_train] = (changed[first_train] + 1) % 3
    garble(label_file, stored.numpy().tobytes(), changed.numpy().tobytes())
    with pytest.warns(UserWarning, match=f"{label_file}.*checksum"):
        again = get_dataset("imagefolder", "train", archive)
    assert torch.equal(again.labels, labels) and torch.equal(again.images, images) and len(calls) == 1

    # rebuilt: the next load checks out, silently and without decoding
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = get_dataset("imagefolder", "train", archive)
    assert torch.equal(again.images, images) and len(calls) == 1


def test_cache_files_without_a_checksum_are_rebuilt(tmp_path, monkeypatch):
    archive = make_tar(make_tree(tmp_path / "tree", np.random.default_rng(0)), tmp_path / "data.tar.gz")
    images = get_dataset("imagefolder", "train", archive).images.clone()
    (image_file,) = (tmp_path / "cache").glob(f"*-v{cache_module.CACHE_FORMAT}.pt")
    blob = torch.load(image_file, weights_only=True)
    del blob["sha256"]  # as a cache written before files carried their checksum
    torch.save(blob, image_file)
    calls = []
    real_decode = cache_module.decode_all
    monkeypatch.setattr(cache_module, "decode_all", lambda *a: calls.append(a) or real_decode(*a))
    with pytest.warns(UserWarning, match=f"{image_file}.*no checksum"):
        assert torch.equal(get_dataset("imagefolder", "train", archive).images, images)
    assert len(calls) == 1 and "sha256" in torch.load(image_file, weights_only=True)


@pytest.mark.filterwarnings("ignore:.*image decoding:DeprecationWarning")
def test_torchvision_jpeg_decode_matches_pil(tmp_path):
    pytest.importorskip("torchvision")
    rng = np.random.default_rng(0)
    items = []
    for i, (mode, quality) in enumerate([("RGB", 75), ("RGB", 95), ("L", 75), ("RGB", 30)] * 3):
        smooth = F.interpolate(torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(i)), size=(33, 29),
                               mode="bilinear")[0].permute(1, 2, 0).numpy()  # natural-ish content
        image = Image.fromarray((smooth * 200 + rng.integers(0, 55, smooth.shape)).astype(np.uint8)).convert(mode)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        items.append((f"{i}.jpg", buffer.getvalue()))
    fast = decode_module.decode_images(items, tmp_path)
    for (name, data), image in zip(items, fast):
        assert torch.equal(image, decode_module.decode_pil(name, data, tmp_path)), name


# ---------------------------------------------------------------- cifar / tiny-imagenet layouts (synthetic)

def test_missing_cifar_names_places_and_remedy(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=rf"cifar10 not found; searched .*{tmp_path}.*cifar10-jpeg.tar.gz"):
        get_dataset("cifar10", "train", tmp_path, download=False)
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(FileNotFoundError, match="download into .* failed.*no network"):
        get_dataset("cifar10", "train", tmp_path)


def test_a_data_dir_that_is_not_there_is_named_and_nothing_is_downloaded(tmp_path, monkeypatch):
    import torchvision.datasets

    def must_not_download(*args, **kwargs):
        raise AssertionError("a download was tried")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", must_not_download)
    with pytest.raises(FileNotFoundError, match=r"data_dir '.*nowhere' does not exist; nothing is downloaded"):
        get_dataset("cifar10", "train", tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()


def test_an_image_over_the_decompression_bomb_limit_is_called_that(tmp_path, monkeypatch):
    from PIL import Image

    from vitlib.data.folder import read_image
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4,096 pixels: over twice the limit
    with pytest.raises(ValueError, match=r"big.png is too large for Pillow to open safely: .*decompression-bomb"):
        read_image(tmp_path / "big.png")


def test_cifar_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    batches = {f"data_batch_{i}": 4 for i in range(1, 6)} | {"test_batch": 6}
    for name, n in batches.items():
        payload = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}
        (folder / name).write_bytes(pickle.dumps(payload, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [c.encode() for c in CIFAR10_CLASSES]}))
    train = get_dataset("cifar10", "train", tmp_path, download=False)
    assert len(train) == 20 and train.classes == CIFAR10_CLASSES and train.std == (0.2470, 0.2435, 0.2616)
    first = pickle.loads((folder / "data_batch_1").read_bytes())
    assert torch.equal(train.images[0], torch.from_numpy(first[b"data"][0].reshape(3, 32, 32)))
    assert len(get_dataset("cifar10", "test", tmp_path, download=False)) == 6


def test_tiny_imagenet_layout_zip(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "tiny-imagenet-200"
    wnids = ["n02", "n01"]
    (root / "val" / "images").mkdir(parents=True)
    (root / "test" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    annotations = []
    for k, wnid in enumerate(wnids):
        (root / "train" / wnid / "images").mkdir(parents=True)
        for i in range(3):
            random_image(rng).save(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", "PNG")
        for i in range(2):
            random_image(rng).save(root / "val" / "images" / f"val_{k}{i}.JPEG", "PNG")
            annotations.append(f"val_{k}{i}.JPEG\t{wnid}\t0\t0\t7\t7")
    (root / "val" / "val_annotations.txt").write_text("\n".join(annotations) + "\n")
    random_image(rng).save(root / "test" / "images" / "test_0.JPEG", "PNG")  # unlabelled: left out
    zipped = make_zip(root, tmp_path / "tiny-imagenet-200.zip")
    (tmp_path / "only").mkdir()
    os.replace(zipped, tmp_path / "only" / zipped.name)
    train = get_dataset("tiny-imagenet", "train", tmp_path / "only")
    test = get_dataset("tiny-imagenet", "test", tmp_path / "only")
    assert train.classes == ["n01", "n02"] and len(train) == 6 and train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert len(test) == 4 and sorted(test.labels.tolist()) == [0, 0, 1, 1]
    image = np.array(Image.open(root / "val" / "images" / "val_00.JPEG"))  # val_0* are n02 = label 1
    assert test.labels[0] == 1 and torch.equal(test.images[0], torch.from_numpy(image).permute(2, 0, 1))
    assert torch.equal(get_dataset("tiny-imagenet", "train", root).images, train.images)  # extracted folder


# ---------------------------------------------------------------- the shared real archives

@pytest.fixture(scope="module")
def shared_data(tmp_path_factory):
    """Decode both shared archives once per module into a throwaway cache, and check that a
    second load comes from the cache without decoding."""
    if not (SHARED / "cifar10-jpeg.tar.gz").exists():
        pytest.skip(f"{SHARED} not present")
    cache = tmp_path_factory.mktemp("shared-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VITLIB_DATA", str(SHARED))
        patch.setenv("VITLIB_CACHE", str(cache))
        loaded = {name: (get_dataset(name, "train"), get_dataset(name, "test"))
                  for name in ("cifar10", "tiny-imagenet")}

        def no_decoding(*args, **kwargs):
            raise AssertionError("decoded again: the cache was not used")

        patch.setattr(cache_module, "decode_all", no_decoding)  # a second load reads the cache only
        for name in loaded:
            again = get_dataset(name, "train"), get_dataset(name, "test")
            assert all(torch.equal(a.images, b.images) for a, b in zip(again, loaded[name]))
    # how long decoding and cached loads take is measured by bench/input_pipeline.py, not here
    yield loaded, None, cache


@pytest.mark.slow
def test_shared_cifar10(shared_data):
    loaded, _, _ = shared_data
    train, test = loaded["cifar10"]
    assert train.images.shape == (50000, 3, 32, 32) and test.images.shape == (10000, 3, 32, 32)
    assert train.classes == CIFAR10_CLASSES
    assert train.labels.bincount().tolist() == [5000] * 10 and test.labels.bincount().tolist() == [1000] * 10
    assert train.mean == (0.4913, 0.4821, 0.4465) and train.std == (0.2452, 0.2428, 0.2606)
    with tarfile.open(SHARED / "cifar10-jpeg.tar.gz", "r|gz") as tar:  # independent read of one member
        member = next(m for m in tar if m.name == "cifar10/test/cat/0000.jpg")
        cat = np.array(Image.open(tar.extractfile(member)))
    assert test.labels[3000] == 3 and torch.equal(test.images[3000], torch.from_numpy(cat).permute(2, 0, 1))


@pytest.mark.slow
def test_shared_cifar10_val_split(shared_data, monkeypatch):
    monkeypatch.setenv("VITLIB_DATA", str(SHARED))
    monkeypatch.setenv("VITLIB_CACHE", str(shared_data[2]))
    val = get_dataset("cifar10", "val", val_fraction=0.02)
    assert len(val) == 1000 and val.labels.bincount().tolist() == [100] * 10
    assert len(get_dataset("cifar10", "train", val_fraction=0.02)) == 49000


@pytest.mark.slow
def test_shared_tiny_imagenet(shared_data):
    loaded, _, _ = shared_data
    train, test = loaded["tiny-imagenet"]
    assert train.images.shape == (100000, 3, 32, 32) and test.images.shape == (10000, 3, 32, 32)
    assert len(train.classes) == 200 and train.classes == sorted(train.classes)
    # the labels stay WordNet ids; words.txt names them (first synonym), each name once
    assert (train.classes[0], train.class_names[0]) == ("n01443537", "goldfish")
    assert test.class_names == train.class_names and len(set(train.class_names)) == 200
    assert train.labels.bincount().tolist() == [500] * 200 and test.labels.bincount().tolist() == [50] * 200


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_a_colour_image_for_a_grey_model_is_its_luma(tmp_path, mode):
    from PIL import Image

    from vitlib.data.folder import read_image
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (8, 8, len(mode)), dtype=np.uint8)
    if mode == "RGBA":
        pixels[..., 3] = 255  # opaque: the colour is what Pillow's "L" sees
    Image.fromarray(pixels, mode).save(tmp_path / "x.png")
    grey = read_image(tmp_path / "x.png", channels=1)
    expected = np.asarray(Image.open(tmp_path / "x.png").convert("RGB").convert("L"))
    assert grey.shape == (1, 8, 8) and np.abs(grey[0].numpy().astype(int) - expected).max() <= 1
