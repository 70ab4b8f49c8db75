"""Classification data and config: the digits split, CIFAR-10 read from torchvision's on-disk format, configs."""

import glob
import os
import pickle

import numpy as np
import pytest
import torch

from imagescore_det.classification import load_classification_config, load_split, stratified_split
from imagescore_det.classification.data import CIFAR10_MEAN, CIFAR10_STD

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASS_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def write_tiny_cifar10(root, per_class_train=4, per_class_test=2):
    """Write CIFAR-10's python batches (pickled dicts, rows = red, green, blue planes) with tiny content.

    Image k of the training set has red = k, green = 2k mod 256, blue = 255 - k everywhere, so a
    reader that mixes up channels or images gives values the test can spot.
    """
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder)

    def batch(labels, first_value):
        values = (first_value + np.arange(len(labels))) % 256
        planes = [np.repeat(v, 1024) for v in (values, (2 * values) % 256, 255 - values)]
        data = np.stack(
            [
                np.concatenate([p[i * 1024 : (i + 1) * 1024] for p in planes])
                for i in range(len(labels))
            ]
        )
        return {
            "batch_label": "tiny",
            "labels": list(labels),
            "data": data.astype(np.uint8),
            "filenames": ["x.png"] * len(labels),
        }

    train_labels = np.tile(np.arange(10), per_class_train)
    for i, part in enumerate(np.array_split(train_labels, 5)):
        start = sum(len(p) for p in np.array_split(train_labels, 5)[:i])
        with open(os.path.join(folder, "data_batch_%d" % (i + 1)), "wb") as f:
            pickle.dump(batch(part, start), f)
    with open(os.path.join(folder, "test_batch"), "wb") as f:
        pickle.dump(batch(np.tile(np.arange(10), per_class_test), 100), f)
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        pickle.dump({"label_names": CLASS_NAMES, "num_cases_per_batch": 8, "num_vis": 3072}, f)
    return train_labels


def cifar_cfg(root, *opts):
    path = os.path.join(REPO, "configs", "classification", "cifar10_vgg16.yaml")
    return load_classification_config(path, ["DATA.ROOT", str(root), *opts])


def test_stratified_split_keeps_class_proportions_and_is_fixed_by_its_seed():
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    first, rest = stratified_split(labels, 0.6, seed=3)
    assert sorted(np.concatenate([first, rest]).tolist()) == list(range(100))
    assert np.bincount(labels[first]).tolist() == [6, 12, 18, 24]
    again, _ = stratified_split(labels, 0.6, seed=3)
    other, _ = stratified_split(labels, 0.6, seed=4)
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def test_digits_split_has_the_papers_proportions_and_disjoint_parts():
    split = load_split(
        load_classification_config(os.path.join(REPO, "configs", "classification", "digits.yaml"))
    )
    sizes = [len(split.labelled), len(split.additional), len(split.test)]
    assert sum(sizes) == 1797
    assert abs(len(split.test) / 1797 - 1 / 6) < 0.01
    assert abs(len(split.labelled) / (1797 - len(split.test)) - 0.6) < 0.01
    ids = [set(part.ids.tolist()) for part in (split.labelled, split.additional, split.test)]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert (
        split.labelled.images.shape[1:] == (1, 8, 8)
        and split.labelled.images.dtype == torch.float32
    )
    assert 0.0 <= float(split.labelled.images.min()) and float(split.labelled.images.max()) <= 1.0
    assert split.num_classes == 10 and np.bincount(split.test.labels.numpy()).min() >= 29


def test_cifar10_loader_reads_torchvision_files(tmp_path):
    train_labels = write_tiny_cifar10(tmp_path)
    split = load_split(cifar_cfg(tmp_path, "DATA.VERIFY_CHECKSUMS", "False"))
    assert split.class_names == CLASS_NAMES
    assert (len(split.labelled), len(split.additional), len(split.test)) == (24, 16, 20)
    assert set(np.bincount(split.labelled.labels.numpy(), minlength=10).tolist()) <= {
        2,
        3,
    }  # stratified
    for part in (split.labelled, split.additional):
        for image, label, image_id in zip(part.images, part.labels, part.ids):
            assert int(label) == train_labels[image_id]
            expected = [
                (v / 255.0 - m) / s
                for v, m, s in zip(
                    (image_id, 2 * image_id % 256, 255 - image_id), CIFAR10_MEAN, CIFAR10_STD
                )
            ]
            assert torch.allclose(
                image.mean(dim=(1, 2)), torch.tensor(expected, dtype=torch.float32), atol=1e-5
            )
    assert split.test.ids.min() >= 50000
    assert torch.allclose(
        split.test.images[0, 0, 0, 0],
        torch.tensor((100 / 255.0 - CIFAR10_MEAN[0]) / CIFAR10_STD[0]),
        atol=1e-5,
    )


def test_cifar10_with_checksums_refuses_other_files_naming_the_folder(tmp_path):
    write_tiny_cifar10(tmp_path)
    with pytest.raises(ValueError, match="cifar-10-batches-py.*MD5"):
        load_split(cifar_cfg(tmp_path))


def test_cifar10_missing_names_the_folder(tmp_path):
    with pytest.raises(ValueError, match=str(tmp_path)):
        load_split(cifar_cfg(tmp_path, "DATA.VERIFY_CHECKSUMS", "False"))


@pytest.mark.parametrize(
    "path", sorted(glob.glob(os.path.join(REPO, "configs", "classification", "*.yaml")))
)
def test_every_classification_config_loads(path):
    cfg = load_classification_config(path)
    assert len(cfg.IMAGESCORE.ALPHAS) == 10 and len(cfg.SEEDS) >= 5


def test_config_errors_name_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("SOLVER:\n  EPOCHS_LABELED: 3\n")
    with pytest.raises(ValueError, match="bad.yaml.*EPOCHS_LABELED"):
        load_classification_config(str(bad))
    bad.write_text("IMAGESCORE:\n  ALPHAS: [1.5, 0.3]\n")
    with pytest.raises(ValueError, match="bad.yaml.*ALPHAS"):
        load_classification_config(str(bad))
    with pytest.raises(ValueError, match="override"):
        load_classification_config(
            os.path.join(REPO, "configs", "classification", "digits.yaml"), ["NO.SUCH_KEY", "1"]
        )
