"""Fashion-MNIST through torchvision's reader, from tiny gzipped IDX files in the Debian package's layout."""

import gzip
import os
import struct

import numpy as np
import pytest

from imagescore_det.classification import load_classification_config, load_split
from imagescore_det.classification.data import FASHION_MNIST_MEAN, FASHION_MNIST_STD

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX format: two zero bytes, type 0x08 (unsigned byte), the number of dimensions, each size as a
    big-endian int32, then the data in row-major order."""
    return (
        struct.pack(">HBB", 0, 0x08, array.ndim)
        + struct.pack(">%dI" % array.ndim, *array.shape)
        + array.astype(np.uint8).tobytes()
    )


def write_tiny_fashion_mnist(folder, per_class_train=10, per_class_test=2):
    """Four .gz files as Debian's dataset-fashion-mnist installs them; training image k has pixel value
    k mod 256 everywhere except pixel (0, 1), which is 255 - k mod 256, so mixed-up images are visible."""
    os.makedirs(folder, exist_ok=True)
    parts = {}
    for prefix, per_class in (("train", per_class_train), ("t10k", per_class_test)):
        labels = np.tile(np.arange(10), per_class)
        values = (np.arange(len(labels)) + (0 if prefix == "train" else 100)) % 256
        images = np.repeat(values, 28 * 28).reshape(-1, 28, 28)
        images[:, 0, 1] = 255 - values
        parts[prefix] = labels
        for name, array in (("images-idx3", images), ("labels-idx1", labels)):
            with gzip.open(os.path.join(folder, "%s-%s-ubyte.gz" % (prefix, name)), "wb") as f:
                f.write(idx_bytes(array))
    return parts["train"], parts["t10k"]


def fashion_cfg(root, cache, *opts):
    path = os.path.join(REPO, "configs", "classification", "fashion_mnist_vgg.yaml")
    return load_classification_config(
        path, ["DATA.ROOT", str(root), "DATA.CACHE_DIR", str(cache), *opts]
    )


def test_split_has_the_papers_proportions_and_reads_every_image_right(tmp_path):
    train_labels, test_labels = write_tiny_fashion_mnist(tmp_path / "package")
    split = load_split(fashion_cfg(tmp_path / "package", tmp_path / "cache"))
    assert (len(split.labelled), len(split.additional), len(split.test)) == (60, 40, 20)
    assert np.bincount(split.labelled.labels.numpy()).tolist() == [6] * 10  # 60 % of every class
    assert np.bincount(split.additional.labels.numpy()).tolist() == [4] * 10
    assert split.class_names[0] == "T-shirt/top" and split.num_classes == 10
    assert not set(split.labelled.ids) & set(split.additional.ids)
    assert sorted(np.concatenate([split.labelled.ids, split.additional.ids]).tolist()) == list(
        range(100)
    )
    for part, labels, offset in (
        (split.labelled, train_labels, 0),
        (split.additional, train_labels, 0),
        (split.test, test_labels, 60000),
    ):
        assert part.images.shape[1:] == (1, 28, 28)
        pixels = part.images.numpy() * FASHION_MNIST_STD + FASHION_MNIST_MEAN
        value = (part.ids - offset + (100 if offset else 0)) % 256
        assert np.allclose(pixels[:, 0, 5, 5] * 255, value, atol=1e-3)
        assert np.allclose(pixels[:, 0, 0, 1] * 255, 255 - value, atol=1e-3)
        assert np.array_equal(part.labels.numpy(), labels[part.ids - offset])
    # torchvision's reader got exactly the uncompressed bytes, in its own layout
    with gzip.open(tmp_path / "package" / (NAMES[0] + ".gz"), "rb") as f:
        assert (tmp_path / "cache" / "FashionMNIST" / "raw" / NAMES[0]).read_bytes() == f.read()


def test_split_is_fixed_by_the_split_seed_and_reads_an_unpacked_root_directly(tmp_path):
    write_tiny_fashion_mnist(tmp_path / "package")
    first = load_split(fashion_cfg(tmp_path / "package", tmp_path / "cache"))
    again = load_split(fashion_cfg(tmp_path / "package", tmp_path / "cache2"))
    unpacked = load_split(
        fashion_cfg(tmp_path / "cache", tmp_path / "unused")
    )  # holds FashionMNIST/raw/ already
    other = load_split(
        fashion_cfg(tmp_path / "package", tmp_path / "cache", "DATA.SPLIT_SEED", "1")
    )
    for split in (again, unpacked):
        assert np.array_equal(first.labelled.ids, split.labelled.ids)
        assert np.array_equal(first.additional.ids, split.additional.ids)
        assert np.array_equal(first.labelled.images.numpy(), split.labelled.images.numpy())
    assert not (tmp_path / "unused").exists()
    assert not np.array_equal(first.labelled.ids, other.labelled.ids)


def test_missing_data_names_the_folder_and_the_debian_package(tmp_path):
    with pytest.raises(
        ValueError, match="%s.*train-images-idx3-ubyte.gz.*dataset-fashion-mnist" % tmp_path
    ):
        load_split(fashion_cfg(tmp_path, tmp_path / "cache"))


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_damaged_file_is_named(tmp_path, damage):
    write_tiny_fashion_mnist(tmp_path / "package")
    path = tmp_path / "package" / "t10k-images-idx3-ubyte.gz"
    data = path.read_bytes()
    path.write_bytes(
        data[: len(data) // 2] if damage == "truncated" else data[:20] + b"\x00" * 40 + data[60:]
    )
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz"):
        load_split(fashion_cfg(tmp_path / "package", tmp_path / "cache"))
    assert not (tmp_path / "cache" / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte").exists()
