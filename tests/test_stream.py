"""BatchStream: epoch coverage, reproducibility, rank sharding, evaluation order, folder path."""
import numpy as np
import pytest
import torch
from PIL import Image

from vitlib.data import AugmentConfig, BatchStream, ImageDataset, get_dataset


def id_dataset(n=103) -> ImageDataset:
    """Image i carries its own index in two pixels; mean 0, std 1/255 makes x the raw byte values."""
    images = torch.zeros(n, 1, 2, 2, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n) // 256
    images[:, 0, 0, 1] = torch.arange(n) % 256
    return ImageDataset(images, torch.arange(n) % 5, [str(k) for k in range(5)], (0.0,), (1 / 255,), "ids")


def ids(x: torch.Tensor) -> list[int]:
    x = x.round().long()
    return (x[:, 0, 0, 0] * 256 + x[:, 0, 0, 1]).tolist()


def epoch_ids(stream) -> list[list[int]]:
    return [ids(x) for x, _ in stream]


def test_every_example_once_per_epoch():
    data = id_dataset()
    stream = BatchStream(data, 10, device="cpu", drop_last=False)
    batches = epoch_ids(stream)
    assert len(batches) == len(stream) == 11 and [len(b) for b in batches] == [10] * 10 + [3]
    assert sorted(sum(batches, [])) == list(range(len(data)))
    dropping = BatchStream(data, 10, device="cpu")
    seen = sum(epoch_ids(dropping), [])
    assert len(dropping) == 10 and len(seen) == len(set(seen)) == 100


def test_same_seed_and_epoch_same_batches():
    data = id_dataset()
    config = AugmentConfig(crop="pad_crop", padding=1, flip=True)
    a = BatchStream(data, 8, device="cpu", seed=3)
    b = BatchStream(data, 8, device="cpu", seed=3)
    first = epoch_ids(a)
    assert first == epoch_ids(b)
    a.set_epoch(1)
    assert epoch_ids(a) != first
    a.set_epoch(0)
    assert epoch_ids(a) == first and epoch_ids(BatchStream(data, 8, device="cpu", seed=4)) != first
    augmented = [BatchStream(data, 8, device="cpu", seed=3, augment=config) for _ in range(2)]
    for (x1, y1), (x2, y2) in zip(*augmented):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_two_ranks_partition_the_epoch():
    data = id_dataset(100)
    shards = [sum(epoch_ids(BatchStream(data, 7, device="cpu", rank=r, world_size=2, drop_last=False)), [])
              for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 50
    assert sorted(shards[0] + shards[1]) == list(range(100))
    padded = [sum(epoch_ids(BatchStream(id_dataset(101), 7, device="cpu", rank=r, world_size=2, drop_last=False)), [])
              for r in (0, 1)]
    assert len(padded[0]) == len(padded[1]) == 51 and set(padded[0] + padded[1]) == set(range(101))


def test_eval_stream_in_order_and_soft_targets():
    data = id_dataset()
    stream = BatchStream(data, 16, device="cpu", shuffle=False, drop_last=False)
    assert sum(epoch_ids(stream), []) == list(range(len(data)))
    labels = torch.cat([y for _, y in stream])
    assert torch.equal(labels, data.labels)
    mixing = BatchStream(data, 16, device="cpu", augment=AugmentConfig(mixup_alpha=0.8))
    x, y = next(iter(mixing))
    assert x.dtype == torch.float32 and y.shape == (16, 5) and torch.allclose(y.sum(1), torch.ones(16))


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_size=0), "batch_size=0"),
    (dict(batch_size=500), "batch_size=500 gives no batch"),
    (dict(batch_size=4, rank=2, world_size=2), r"rank=2; must be an int in \[0, world_size=2\)"),
    (dict(batch_size=4, augment="flip"), "augment must be an AugmentConfig"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BatchStream(id_dataset(), device="cpu", **kwargs)


@pytest.mark.parametrize("workers", [0, 1])
def test_folder_stream_matches_in_memory(tmp_path, monkeypatch, workers):
    monkeypatch.setenv("VITLIB_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "tree" / "train" / c).mkdir(parents=True)
        for i in range(9):
            Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(
                tmp_path / "tree" / "train" / c / f"{i}.png")
    memory = get_dataset("imagefolder", "train", tmp_path / "tree")
    lazy = get_dataset("imagefolder", "train", tmp_path / "tree", in_memory=False)
    config = AugmentConfig(crop="pad_crop", padding=2, flip=True, cutmix_alpha=1.0)
    streams = [BatchStream(d, 4, device="cpu", augment=config, seed=1, num_workers=workers) for d in (memory, lazy)]
    epochs = []
    for epoch in (0, 1):  # the (persistent) loader must pick up the new epoch's order
        for s in streams:
            s.set_epoch(epoch)
        pairs = list(zip(*streams))
        assert len(pairs) == 4
        for (x1, y1), (x2, y2) in pairs:
            assert torch.allclose(x1, x2, atol=1e-5) and torch.allclose(y1, y2)
        epochs.append(torch.cat([x for (x, _), _ in pairs]))
    assert not torch.equal(epochs[0], epochs[1])
