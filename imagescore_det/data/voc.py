"""VOC-format datasets under Detectron2's dataset root (``$DETECTRON2_DATASETS``, default ``datasets/``).

The real splits need nothing here: Detectron2's builtin module already registers
``voc_2007_trainval`` (labelled), ``voc_2012_trainval`` (unlabelled) and ``voc_2007_test`` under that
root. This module registers the synthetic VOC-format set (see :mod:`.synthetic`) with the same
loader and evaluator type:

    synthetic_voc_2007_trainval   labelled set          VOC2007/ImageSets/Main/trainval.txt
    synthetic_voc_2012_trainval   unlabelled set        VOC2012/ImageSets/Main/trainval.txt
    synthetic_voc_2007_test       test set (AP50)       VOC2007/ImageSets/Main/test.txt

The set's sizes, generator seed and distractors are config (``IMAGESCORE.SYNTHETIC``), and each
combination lives in a folder of its own (:func:`synthetic_root`), so sets of different seeds, sizes
or distractors sit side by side. The loader is Detectron2's ``load_voc_instances``; where an
annotation records the image's kind (the unlabelled split of an uncurated pool), the dataset dict
carries it as ``record["kind"]``. On import the names point at the default combination's folder;
registration is lazy (nothing is read until a dataset is asked for), and
:func:`prepare_synthetic_data` generates the config's set when it is missing and points the names
at it.
"""

import logging
import os
from typing import Iterable, List, Mapping, Optional, Sequence

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.data.datasets.pascal_voc import load_voc_instances  # noqa: E402
from detectron2.utils import comm  # noqa: E402

from ..utils.paths import datasets_root  # noqa: E402
from .synthetic import (  # noqa: E402
    DISTRACTOR_KINDS,
    SYNTHETIC_CLASSES,
    ensure_synthetic_voc,
    read_kind,
)

__all__ = [
    "SYNTHETIC_DATASETS",
    "DEFAULT_SYNTHETIC_SIZES",
    "datasets_root",
    "synthetic_sizes",
    "synthetic_root",
    "load_synthetic_voc",
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
DEFAULT_SYNTHETIC_SIZES = {
    "num_labelled": 240,
    "num_unlabelled": 360,
    "num_test": 120,
    "seed": 0,
    "distractor_fraction": 0.0,
    "distractors": list(DISTRACTOR_KINDS),
}
#: The keys of the counts and seed, which name a set's folder as before distractors existed.
COUNT_KEYS = ("num_labelled", "num_unlabelled", "num_test", "seed")


def synthetic_sizes(cfg) -> dict:
    """``IMAGESCORE.SYNTHETIC`` as :func:`.synthetic.ensure_synthetic_voc` keyword arguments."""
    node = cfg.IMAGESCORE.SYNTHETIC
    return {
        "num_labelled": node.NUM_LABELLED,
        "num_unlabelled": node.NUM_UNLABELLED,
        "num_test": node.NUM_TEST,
        "seed": node.SEED,
        "distractor_fraction": float(node.DISTRACTOR_FRACTION),
        "distractors": list(node.DISTRACTORS),
    }


def synthetic_root(root: Optional[str] = None, sizes: Optional[Mapping[str, object]] = None) -> str:
    """The folder of the set with these ``sizes`` (missing keys: :data:`DEFAULT_SYNTHETIC_SIZES`) under ``root``.

    ``synthetic_voc`` for the defaults, else e.g. ``synthetic_voc_seed1_l100_u500_t240``; an
    uncurated pool adds its fraction, and its kinds where they are not the default ones:
    ``synthetic_voc_d0.5``, ``synthetic_voc_seed1_l100_u500_t240_d0.25_novel-photos``. A fraction of
    0 is the clean set, whatever the kinds, and shares its folder.
    """
    sizes = dict(DEFAULT_SYNTHETIC_SIZES, **(sizes or {}))
    name = "synthetic_voc"
    if any(sizes[key] != DEFAULT_SYNTHETIC_SIZES[key] for key in COUNT_KEYS):
        name += "_seed{seed}_l{num_labelled}_u{num_unlabelled}_t{num_test}".format(**sizes)
    if sizes["distractor_fraction"] > 0:
        name += "_d%r" % float(sizes["distractor_fraction"])
        if list(sizes["distractors"]) != list(DISTRACTOR_KINDS):
            name += "_" + "-".join(sizes["distractors"])
    return os.path.join(root if root is not None else datasets_root(), name)


def load_synthetic_voc(dirname: str, split: str, class_names: Sequence[str]) -> List[dict]:
    """Detectron2's ``load_voc_instances``, each dict with the ``kind`` its annotation records, if any."""
    records = load_voc_instances(dirname, split, list(class_names))
    for record in records:
        kind = read_kind(os.path.join(dirname, "Annotations", record["image_id"] + ".xml"))
        if kind is not None:
            record["kind"] = kind
    return records


def register_synthetic_voc(directory: str) -> None:
    """(Re-)register the three synthetic datasets to read from ``directory``, as Detectron2's
    ``register_pascal_voc`` does, with :func:`load_synthetic_voc` as the loader."""
    for name, (folder, split, year) in SYNTHETIC_DATASETS.items():
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
        if name in MetadataCatalog.list():
            MetadataCatalog.remove(name)
        dirname = os.path.join(directory, folder)
        DatasetCatalog.register(
            name,
            lambda dirname=dirname, split=split: load_synthetic_voc(
                dirname, split, SYNTHETIC_CLASSES
            ),
        )
        MetadataCatalog.get(name).set(
            thing_classes=list(SYNTHETIC_CLASSES),
            dirname=dirname,
            year=year,
            split=split,
            evaluator_type="pascal_voc",
        )


def ensure_synthetic_data(
    dataset_names: Iterable[str], sizes: Optional[Mapping[str, object]] = None
) -> bool:
    """Make the synthetic datasets among ``dataset_names`` readable from the folder of ``sizes``.

    The folder (:func:`synthetic_root` under the dataset root as the environment says *now*) is
    generated when missing, reused when complete and made with these sizes, and refused with a
    ValueError otherwise. The names are then registered to read from it. Returns whether any
    synthetic dataset is among ``dataset_names``.
    """
    if not any(name in SYNTHETIC_DATASETS for name in dataset_names):
        return False
    sizes = dict(DEFAULT_SYNTHETIC_SIZES, **(sizes or {}))
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
