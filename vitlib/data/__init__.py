"""Datasets as uint8 tensors, batched augmentation on any device, and reproducible batch streams.

    from vitlib.data import get_dataset, AugmentConfig, BatchStream
    train = get_dataset("cifar10", "train", val_fraction=0.02)
    stream = BatchStream(train, 512, device="cuda", augment=AugmentConfig(crop="pad_crop", flip=True))
"""
from vitlib.data.augment import AugmentConfig, augment_batch, normalize, resize_images
from vitlib.data.datasets import DATASETS, SPLITS, ImageDataset, get_dataset
from vitlib.data.folder import FolderDataset, image_batch
from vitlib.data.stream import BatchStream

__all__ = ["AugmentConfig", "BatchStream", "DATASETS", "FolderDataset", "ImageDataset", "SPLITS", "image_batch",
           "augment_batch", "get_dataset", "normalize", "resize_images"]
