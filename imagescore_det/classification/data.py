"""Datasets for the classification mode, split into labelled / additional / test (docs/method.md §3).

Every part is held in memory as one normalised float tensor: the datasets used here (digits,
CIFAR-10, Fashion-MNIST) fit, and per-epoch re-scoring of the additional images is then a plain batched loop.
The split is stratified by class and fixed by its own seed, so that every training seed sees the
same images and results of different seeds are paired.
"""

import gzip
import os
import shutil
import zlib
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torchvision.datasets import CIFAR10, FashionMNIST

from ..utils.io import atomic_write

__all__ = [
    "ImageSet",
    "ClassificationSplit",
    "stratified_split",
    "load_split",
    "prepare_fashion_mnist",
]

#: What ``DATA.NAME`` accepts.
DATASET_NAMES = ("digits", "cifar10", "fashion_mnist")
#: Per-channel mean and standard deviation of CIFAR-10's training images (the usual constants).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
#: Offset of CIFAR-10 test image ids, so that ids are unique across the three parts.
CIFAR10_TEST_ID_OFFSET = 50000
#: Where Debian's package ``dataset-fashion-mnist`` installs the four gzipped IDX files.
FASHION_MNIST_PACKAGE, FASHION_MNIST_ROOT = (
    "dataset-fashion-mnist",
    "/usr/share/datasets/fashion-mnist",
)
#: Mean and standard deviation of Fashion-MNIST's training pixels (scaled to [0, 1]).
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530
#: Offset of Fashion-MNIST test image ids (the training set has 60,000 images).
FASHION_MNIST_TEST_ID_OFFSET = 60000


@dataclass
class ImageSet:
    """Images (float [N, C, H, W], normalised), labels (int64 [N]) and unique ids (int64 [N])."""

    images: torch.Tensor
    labels: torch.Tensor
    ids: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices) -> "ImageSet":
        indices = np.asarray(indices, dtype=np.int64)
        return ImageSet(self.images[indices], self.labels[indices], self.ids[indices])


@dataclass
class ClassificationSplit:
    labelled: ImageSet
    additional: ImageSet
    test: ImageSet
    class_names: List[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def stratified_split(labels, fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Indices (first, rest): ``first`` holds ``fraction`` of the images, each class in proportion.

    Both index arrays are sorted, so that the split, not the shuffle, defines each part's order.
    """
    labels = np.asarray(labels)
    first, rest = train_test_split(
        np.arange(len(labels)), train_size=fraction, stratify=labels, random_state=seed
    )
    return np.sort(first), np.sort(rest)


def _image_set(images: np.ndarray, labels, ids) -> ImageSet:
    return ImageSet(
        torch.as_tensor(np.ascontiguousarray(images), dtype=torch.float32),
        torch.as_tensor(np.asarray(labels), dtype=torch.int64),
        np.asarray(ids, dtype=np.int64),
    )


def _labelled_and_additional(
    pool: ImageSet, labelled_fraction: float, seed: int
) -> Tuple[ImageSet, ImageSet]:
    labelled, additional = stratified_split(pool.labels.numpy(), labelled_fraction, seed)
    return pool.subset(labelled), pool.subset(additional)


def load_digits_split(
    *, labelled_fraction: float, test_fraction: float, seed: int
) -> ClassificationSplit:
    """scikit-learn's 1,797 8x8 digits: a stratified test part first, then labelled / additional."""
    digits = load_digits()
    images = (digits.images[:, None, :, :] / 16.0).astype(np.float32)  # pixel values are 0..16
    everything = _image_set(images, digits.target, np.arange(len(images)))
    pool_idx, test_idx = stratified_split(digits.target, 1.0 - test_fraction, seed)
    labelled, additional = _labelled_and_additional(
        everything.subset(pool_idx), labelled_fraction, seed
    )
    names = [str(name) for name in digits.target_names]
    return ClassificationSplit(labelled, additional, everything.subset(test_idx), names)


class _CIFAR10FilesOnly(CIFAR10):
    """torchvision's CIFAR-10 reader without its MD5 check: the same files, any content."""

    train_list = [[name, None] for name, _ in CIFAR10.train_list]
    test_list = [[name, None] for name, _ in CIFAR10.test_list]
    meta = dict(CIFAR10.meta, md5=None)


def _read_cifar10(root: str, train: bool, verify_checksums: bool) -> CIFAR10:
    reader = CIFAR10 if verify_checksums else _CIFAR10FilesOnly
    try:
        return reader(root, train=train, download=False)
    except RuntimeError as error:
        folder = os.path.join(root, CIFAR10.base_folder)
        check = (
            " (MD5 sums checked; DATA.VERIFY_CHECKSUMS False reads other files)"
            if verify_checksums
            else ""
        )
        raise ValueError(
            "CIFAR-10 not found or corrupted in %s%s: extract %s there (nothing is downloaded at run time). %s"
            % (folder, check, CIFAR10.url, error)
        ) from error


def _cifar10_image_set(dataset: CIFAR10, id_offset: int) -> ImageSet:
    images = dataset.data.transpose(0, 3, 1, 2).astype(np.float32) / 255.0  # NHWC uint8 -> NCHW
    mean = np.asarray(CIFAR10_MEAN, dtype=np.float32)[None, :, None, None]
    std = np.asarray(CIFAR10_STD, dtype=np.float32)[None, :, None, None]
    return _image_set((images - mean) / std, dataset.targets, id_offset + np.arange(len(images)))


def load_cifar10_split(
    root: str, *, labelled_fraction: float, seed: int, verify_checksums: bool = True
) -> ClassificationSplit:
    """CIFAR-10 from torchvision's files: the training set split labelled / additional, the test set as test."""
    train = _read_cifar10(root, True, verify_checksums)
    test = _read_cifar10(root, False, verify_checksums)
    labelled, additional = _labelled_and_additional(
        _cifar10_image_set(train, 0), labelled_fraction, seed
    )
    return ClassificationSplit(
        labelled, additional, _cifar10_image_set(test, CIFAR10_TEST_ID_OFFSET), list(train.classes)
    )


def prepare_fashion_mnist(root: str, cache_dir: str) -> str:
    """The root that torchvision's ``FashionMNIST`` reads: ``root`` itself when it already holds
    ``FashionMNIST/raw/`` with the uncompressed files, else ``cache_dir`` after unpacking the four
    ``.gz`` files of ``root`` (the Debian package's layout) into ``cache_dir/FashionMNIST/raw/``.

    Unpacked on every call, each file written atomically: the bytes depend only on the .gz files,
    so a stale or half-written copy can never be read.
    """
    names = [os.path.splitext(name)[0] for name, _ in FashionMNIST.resources]
    if all(os.path.isfile(os.path.join(root, "FashionMNIST", "raw", name)) for name in names):
        return root
    missing = [
        name + ".gz" for name in names if not os.path.isfile(os.path.join(root, name + ".gz"))
    ]
    if missing:
        raise ValueError(
            "Fashion-MNIST not found: %s has no %s (nor FashionMNIST/raw/). Install the Debian package %s "
            "(apt-get install %s puts the files in %s) or set DATA.ROOT; nothing is downloaded at run time."
            % (root, missing[0], FASHION_MNIST_PACKAGE, FASHION_MNIST_PACKAGE, FASHION_MNIST_ROOT)
        )
    raw = os.path.join(cache_dir, "FashionMNIST", "raw")
    for name in names:
        try:
            with (
                gzip.open(os.path.join(root, name + ".gz"), "rb") as source,
                atomic_write(os.path.join(raw, name), "wb") as target,
            ):
                shutil.copyfileobj(source, target)
        except (OSError, EOFError, zlib.error) as error:
            raise ValueError(
                "cannot unpack %s: %s" % (os.path.join(root, name + ".gz"), error)
            ) from error
    return cache_dir


def _fashion_mnist_image_set(dataset: FashionMNIST, id_offset: int) -> ImageSet:
    images = (
        dataset.data.numpy()[:, None].astype(np.float32) / 255.0 - FASHION_MNIST_MEAN
    ) / FASHION_MNIST_STD
    return _image_set(images, dataset.targets.numpy(), id_offset + np.arange(len(images)))


def load_fashion_mnist_split(
    root: str, cache_dir: str, *, labelled_fraction: float, seed: int
) -> ClassificationSplit:
    """Fashion-MNIST through torchvision's reader: the 60,000 training images split labelled /
    additional (stratified), the 10,000 test images as test."""
    torchvision_root = prepare_fashion_mnist(root, cache_dir)
    try:
        train, test = (
            FashionMNIST(torchvision_root, train=flag, download=False) for flag in (True, False)
        )
    except (
        RuntimeError,
        ValueError,
        AssertionError,
    ) as error:  # torchvision's checks of the IDX headers
        raise ValueError(
            "Fashion-MNIST files in %s are damaged: %s"
            % (os.path.join(torchvision_root, "FashionMNIST", "raw"), error)
        ) from error
    labelled, additional = _labelled_and_additional(
        _fashion_mnist_image_set(train, 0), labelled_fraction, seed
    )
    return ClassificationSplit(
        labelled,
        additional,
        _fashion_mnist_image_set(test, FASHION_MNIST_TEST_ID_OFFSET),
        list(train.classes),
    )


def load_split(cfg) -> ClassificationSplit:
    """The split that ``cfg.DATA`` describes."""
    data = cfg.DATA
    if data.NAME == "digits":
        return load_digits_split(
            labelled_fraction=data.LABELLED_FRACTION,
            test_fraction=data.TEST_FRACTION,
            seed=data.SPLIT_SEED,
        )
    if data.NAME == "cifar10":
        return load_cifar10_split(
            data.ROOT,
            labelled_fraction=data.LABELLED_FRACTION,
            seed=data.SPLIT_SEED,
            verify_checksums=data.VERIFY_CHECKSUMS,
        )
    if data.NAME == "fashion_mnist":
        return load_fashion_mnist_split(
            data.ROOT,
            data.CACHE_DIR,
            labelled_fraction=data.LABELLED_FRACTION,
            seed=data.SPLIT_SEED,
        )
    raise ValueError("DATA.NAME must be one of %s, got %r" % (DATASET_NAMES, data.NAME))
