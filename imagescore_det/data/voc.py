"""VOC-format datasets under Detectron2's dataset root (``$DETECTRON2_DATASETS``, default ``datasets/``).

The real splits need nothing here: Detectron2's builtin module already registers
``voc_2007_trainval`` (labelled), ``voc_2012_trainval`` (unlabelled) and ``voc_2007_test`` under that
root. This module registers the synthetic VOC-format set (see :mod:`.synthetic`) with the same
loader and evaluator type:

    synthetic_voc_2007_trainval   labelled set          VOC2007/ImageSets/Main/trainval.txt
    synthetic_voc_2012_trainval   unlabelled set        VOC2012/ImageSets/Main/trainval.txt
    synthetic_voc_2007_test       test set (AP50)       VOC2007/ImageSets/Main/test.txt

The set's sizes and generator seed are config (``IMAGESCORE.SYNTHETIC``), and each combination
lives in a folder of its own (:func:`synthetic_root`), so sets of different seeds or sizes sit side
by side. On import the names point at the default combination's folder; registration is lazy
(nothing is read until a dataset is asked for), and :func:`prepare_synthetic_data` generates the
config's set when it is missing and points the names at it.
"""

import logging
import os
from typing import Iterable, Mapping, Optional

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.data.datasets import register_pascal_voc  # noqa: E402
from detectron2.utils import comm  # noqa: E402

from ..utils.paths import datasets_root  # noqa: E402
from .synthetic import SYNTHETIC_CLASSES, ensure_synthetic_voc  # noqa: E402

__all__ = [
    "SYNTHETIC_DATASETS",
    "DEFAULT_SYNTHETIC_SIZES",
    "datasets_root",
    "synthetic_sizes",
    "synthetic_root",
    "register_synthetic_voc",
    "ensure_synthetic_data",
    "prepare_synthetic_data",
]

logger = logging.getLogger(__name__)

#: Dataset name -> (year folder, VOC split, year).
SYNTHETIC_DATASETS = {
    "synthetic_voc_2007_trainval": ("VOC2007", "trainval", 2007),
    "synthetic_voc_2012_trainval": ("VOC2012", "trainval", 2012),
    "synthetic_voc_2007_test": ("VOC2007", "test", 2007),
}
#: The IMAGESCORE.SYNTHETIC defaults (the first demo's set); only this combination keeps the plain
#: folder name ``synthetic_voc``, so sets generated before the sizes became config stay usable.
DEFAULT_SYNTHETIC_SIZES = {"num_labelled": 240, "num_unlabelled": 360, "num_test": 120, "seed": 0}


def synthetic_sizes(cfg) -> dict:
    """``IMAGESCORE.SYNTHETIC`` as :func:`.synthetic.ensure_synthetic_voc` keyword arguments."""
    node = cfg.IMAGESCORE.SYNTHETIC
    return {
        "num_labelled": node.NUM_LABELLED,
        "num_unlabelled": node.NUM_UNLABELLED,
        "num_test": node.NUM_TEST,
        "seed": node.SEED,
    }


def synthetic_root(root: Optional[str] = None, sizes: Optional[Mapping[str, int]] = None) -> str:
    """The folder of the set with these ``sizes`` (default :data:`DEFAULT_SYNTHETIC_SIZES`) under ``root``.

    ``synthetic_voc`` for the defaults, else e.g. ``synthetic_voc_seed1_l100_u500_t240``.
    """
    sizes = dict(DEFAULT_SYNTHETIC_SIZES if sizes is None else sizes)
    name = "synthetic_voc"
    if sizes != DEFAULT_SYNTHETIC_SIZES:
        name += "_seed{seed}_l{num_labelled}_u{num_unlabelled}_t{num_test}".format(**sizes)
    return os.path.join(root if root is not None else datasets_root(), name)


def register_synthetic_voc(directory: str) -> None:
    """(Re-)register the three synthetic datasets to read from ``directory``."""
    for name, (folder, split, year) in SYNTHETIC_DATASETS.items():
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
        if name in MetadataCatalog.list():
            MetadataCatalog.remove(name)
        register_pascal_voc(
            name, os.path.join(directory, folder), split, year, class_names=SYNTHETIC_CLASSES
        )
        MetadataCatalog.get(name).evaluator_type = "pascal_voc"


def ensure_synthetic_data(
    dataset_names: Iterable[str], sizes: Optional[Mapping[str, int]] = None
) -> bool:
    """Make the synthetic datasets among ``dataset_names`` readable from the folder of ``sizes``.

    The folder (:func:`synthetic_root` under the dataset root as the environment says *now*) is
    generated when missing, reused when complete and made with these sizes, and refused with a
    ValueError otherwise. The names are then registered to read from it. Returns whether any
    synthetic dataset is among ``dataset_names``.
    """
    if not any(name in SYNTHETIC_DATASETS for name in dataset_names):
        return False
    sizes = dict(DEFAULT_SYNTHETIC_SIZES if sizes is None else sizes)
    directory = synthetic_root(sizes=sizes)
    logger.info("Using the synthetic VOC set in %s (%s; generated if missing)", directory, sizes)
    ensure_synthetic_voc(directory, **sizes)
    register_synthetic_voc(directory)
    return True


def prepare_synthetic_data(cfg) -> None:
    """The synthetic set that ``cfg`` names (DATASETS.*, IMAGESCORE.*_DATASETS) with its IMAGESCORE.SYNTHETIC
    sizes, in a multi-process run: the main process generates, the others wait."""
    names = list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST)
    names += list(cfg.IMAGESCORE.LABELLED_DATASETS) + list(cfg.IMAGESCORE.UNLABELLED_DATASETS)
    sizes = synthetic_sizes(cfg)
    if comm.is_main_process():
        ensure_synthetic_data(names, sizes)
    comm.synchronize()
    if not comm.is_main_process():
        ensure_synthetic_data(names, sizes)  # finds the set the main process made


register_synthetic_voc(synthetic_root())
