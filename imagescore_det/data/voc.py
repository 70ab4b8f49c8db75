"""VOC-format datasets under Detectron2's dataset root (``$DETECTRON2_DATASETS``, default ``datasets/``).

The real splits need nothing here: Detectron2's builtin module already registers
``voc_2007_trainval`` (labelled), ``voc_2012_trainval`` (unlabelled) and ``voc_2007_test`` under that
root. This module registers the synthetic VOC-format set (see :mod:`.synthetic`) under
``<root>/synthetic_voc`` when it is imported, with the same loader and evaluator type:

    synthetic_voc_2007_trainval   labelled set          VOC2007/ImageSets/Main/trainval.txt
    synthetic_voc_2012_trainval   unlabelled set        VOC2012/ImageSets/Main/trainval.txt
    synthetic_voc_2007_test       test set (AP50)       VOC2007/ImageSets/Main/test.txt

Registration is lazy (nothing is read until a dataset is asked for), so the data may be generated
after import: :func:`ensure_synthetic_data` does that when it is missing.
"""
import logging
import os
from typing import Iterable, Optional

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.data.datasets import register_pascal_voc  # noqa: E402
from detectron2.utils import comm  # noqa: E402

from .synthetic import MANIFEST_NAME, SYNTHETIC_CLASSES, ensure_synthetic_voc  # noqa: E402

__all__ = ["SYNTHETIC_DATASETS", "SYNTHETIC_SIZES", "datasets_root", "synthetic_root", "register_synthetic_voc", "ensure_synthetic_data", "prepare_synthetic_data"]

logger = logging.getLogger(__name__)

#: Dataset name -> (year folder, VOC split, year).
SYNTHETIC_DATASETS = {
    "synthetic_voc_2007_trainval": ("VOC2007", "trainval", 2007),
    "synthetic_voc_2012_trainval": ("VOC2012", "trainval", 2012),
    "synthetic_voc_2007_test": ("VOC2007", "test", 2007),
}
#: What :func:`ensure_synthetic_data` generates when no set exists: sized for the demo, whose whole
#: pipeline (generation, training, scoring, two evaluations) fits in 15 minutes on 2 CPU cores.
SYNTHETIC_SIZES = {"num_labelled": 240, "num_unlabelled": 360, "num_test": 120, "seed": 0}


def datasets_root() -> str:
    """Detectron2's dataset root, read the way its builtin registration reads it."""
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))


def synthetic_root(root: Optional[str] = None) -> str:
    return os.path.join(root if root is not None else datasets_root(), "synthetic_voc")


def register_synthetic_voc(directory: str) -> None:
    """(Re-)register the three synthetic datasets to read from ``directory``."""
    for name, (folder, split, year) in SYNTHETIC_DATASETS.items():
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
        if name in MetadataCatalog.list():
            MetadataCatalog.remove(name)
        register_pascal_voc(name, os.path.join(directory, folder), split, year, class_names=SYNTHETIC_CLASSES)
        MetadataCatalog.get(name).evaluator_type = "pascal_voc"


def ensure_synthetic_data(dataset_names: Iterable[str], directory: Optional[str] = None) -> bool:
    """Make the synthetic datasets among ``dataset_names`` readable from ``directory``.

    ``directory`` defaults to :func:`synthetic_root` as the environment says *now*. A finished set
    (its manifest exists) is used as it is, whatever its sizes; a missing one is generated with
    :data:`SYNTHETIC_SIZES`. The names are then registered to read from ``directory``. Returns
    whether any synthetic dataset is among ``dataset_names``.
    """
    if not any(name in SYNTHETIC_DATASETS for name in dataset_names):
        return False
    directory = directory or synthetic_root()
    if os.path.isfile(os.path.join(directory, MANIFEST_NAME)):
        logger.info("Using the synthetic VOC set in %s", directory)
    else:
        logger.info("Generating the synthetic VOC set in %s (%s)", directory, SYNTHETIC_SIZES)
        ensure_synthetic_voc(directory, **SYNTHETIC_SIZES)
    register_synthetic_voc(directory)
    return True


def prepare_synthetic_data(dataset_names: Iterable[str]) -> None:
    """:func:`ensure_synthetic_data` in a multi-process run: the main process generates, the others wait."""
    names = list(dataset_names)
    if comm.is_main_process():
        ensure_synthetic_data(names)
    comm.synchronize()
    if not comm.is_main_process():
        ensure_synthetic_data(names)  # finds the set the main process made


register_synthetic_voc(synthetic_root())
