"""BatchStream: the training/evaluation batches, reproducible from (seed, epoch, batch, rank).

For an in-memory `ImageDataset` the whole uint8 dataset moves to the device once, and each batch
is an on-device gather followed by batched augmentation there: no DataLoader workers and no
host round trips (the airbench recipe). A `FolderDataset` (larger than memory) goes through a
DataLoader with workers and pinned memory instead; its batches get the same augmentation on the
device after the transfer. Both paths visit examples in the same order for the same arguments.

    stream = BatchStream(train, 512, device="cuda", augment=AugmentConfig(crop="pad_crop", flip=True))
    for epoch in range(epochs):
        stream.set_epoch(epoch)
        for x, y in stream:  # x (B, C, H, W) float32 normalised; y (B,) int64 or (B, K) soft
            ...
"""
import math

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from vitlib.data.augment import AugmentConfig, augment_batch, normalize, to_float
from vitlib.data.datasets import ImageDataset
from vitlib.data.folder import FolderDataset


def derived_seed(*values: int) -> int:
    """A 63-bit seed mixing several non-negative ints (SeedSequence: nearby inputs, unrelated outputs)."""
    return int(np.random.SeedSequence(list(values)).generate_state(1, np.uint64)[0] >> np.uint64(1))


class BatchStream:
    """Batches of one rank's share of `dataset` per epoch.

    Epoch order: a permutation seeded by (seed, epoch) (identity when shuffle=False), made divisible
    by world_size (cut with drop_last, else padded by repeating its start, as DistributedSampler),
    then `order[rank::world_size]`, cut into batches. Augmentation of batch b uses a CPU generator
    seeded by (seed, epoch, rank, b), so a resumed run replays it exactly. The epoch only changes
    through `set_epoch`. Evaluation: shuffle=False, drop_last=False, augment=None yields every
    example once, in order.
    """

    def __init__(self, dataset, batch_size: int, *, device, augment: AugmentConfig | None = None,
                 shuffle: bool = True, drop_last: bool = True, seed: int = 0, rank: int = 0,
                 world_size: int = 1, num_workers: int = 4, memory_format=torch.contiguous_format):
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size={batch_size!r}; must be a positive int")
        if not isinstance(world_size, int) or world_size < 1:
            raise ValueError(f"world_size={world_size!r}; must be an int >= 1")
        if not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"rank={rank!r}; must be an int in [0, world_size={world_size})")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed={seed!r}; must be an int >= 0")
        if augment is not None and not isinstance(augment, AugmentConfig):
            raise ValueError(f"augment must be an AugmentConfig or None, got {type(augment).__name__}")
        if not isinstance(dataset, (ImageDataset, FolderDataset)):
            raise ValueError(f"dataset must be an ImageDataset or FolderDataset, got {type(dataset).__name__}")
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers={num_workers!r}; must be an int >= 0")
        self.dataset, self.batch_size, self.device = dataset, batch_size, torch.device(device)
        self.augment, self.shuffle, self.drop_last = augment, shuffle, drop_last
        self.seed, self.rank, self.world_size, self.num_workers = seed, rank, world_size, num_workers
        self.memory_format = memory_format  # of the yielded batches (vitlib.device.resolve_memory_format)
        self.num_classes = dataset.num_classes
        self.epoch = 0
        if len(self) == 0:
            raise ValueError(f"batch_size={batch_size} gives no batch: each of world_size={world_size} "
                             f"ranks gets {self._per_rank()} of {len(dataset)} examples and drop_last=True")
        self._mean = torch.tensor(dataset.mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self._std = torch.tensor(dataset.std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self._loader = None
        if isinstance(dataset, ImageDataset):  # the whole dataset, once, as uint8
            self._images = dataset.images.to(self.device)
            self._labels = dataset.labels.to(self.device)

    def set_epoch(self, epoch: int) -> None:
        if not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch={epoch!r}; must be an int >= 0")
        self.epoch = epoch

    def _per_rank(self) -> int:
        n, ws = len(self.dataset), self.world_size
        return n // ws if self.drop_last else math.ceil(n / ws)

    def __len__(self) -> int:
        per_rank = self._per_rank()
        return per_rank // self.batch_size if self.drop_last else math.ceil(per_rank / self.batch_size)

    def indices(self) -> torch.Tensor:
        """(len(self) * batch_size or fewer,) int64 CPU: this rank's examples this epoch, in order."""
        n = len(self.dataset)
        if self.shuffle:
            generator = torch.Generator().manual_seed(derived_seed(self.seed, self.epoch, 0))
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        total = self._per_rank() * self.world_size
        order = order.repeat(math.ceil(total / n))[:total]  # cut, or pad from the start
        order = order[self.rank::self.world_size]
        return order[: len(self) * self.batch_size]

    def __iter__(self):
        if isinstance(self.dataset, ImageDataset):
            order = self.indices().to(self.device, non_blocking=True)
            for b in range(len(self)):
                index = order[b * self.batch_size:(b + 1) * self.batch_size]  # on-device gather
                yield self._finish(self._images[index], self._labels[index], b)
            return
        if self._loader is None:
            self._loader = DataLoader(
                self.dataset, batch_size=self.batch_size, sampler=_EpochSampler(self),
                num_workers=self.num_workers, pin_memory=self.device.type == "cuda",
                persistent_workers=self.num_workers > 0, drop_last=False)
        for b, (images, labels) in enumerate(self._loader):
            images = images.to(self.device, non_blocking=True)
            yield self._finish(images, labels.to(self.device, non_blocking=True), b)

    def _finish(self, images: torch.Tensor, labels: torch.Tensor, b: int):
        if self.augment is None:
            x, y = to_float(images), labels
        else:
            generator = torch.Generator().manual_seed(derived_seed(self.seed, self.epoch, 1, self.rank, b))
            x, y = augment_batch(images, labels, self.augment, generator, self.num_classes)
        return normalize(x, self._mean, self._std).contiguous(memory_format=self.memory_format), y


class _EpochSampler(Sampler):
    """The stream's current-epoch order, read when the DataLoader starts an epoch."""

    def __init__(self, stream: BatchStream):
        self.stream = stream

    def __iter__(self):
        return iter(self.stream.indices().tolist())

    def __len__(self) -> int:
        return len(self.stream.indices())
