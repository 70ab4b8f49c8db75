"""The classification mode's configuration: a yacs ``CfgNode`` with every key commented.

yacs (a dependency of fvcore) rejects unknown keys and values of the wrong type, so a typo in a
YAML file fails loudly instead of silently running the defaults. Nothing here imports Detectron2.
"""

from typing import Sequence

from yacs.config import CfgNode

from ..scoring import constants
from .data import DATASET_NAMES
from .models import MODEL_NAMES

__all__ = [
    "get_classification_cfg",
    "load_classification_config",
    "PAPER_LABELLED_FRACTION",
    "PAPER_TEST_FRACTION",
]

#: CIFAR-10 in the paper: 30,000 of the 50,000 training images are labelled, 20,000 additional.
PAPER_LABELLED_FRACTION = 0.6
#: CIFAR-10's test set is 10,000 of its 60,000 images; used where a dataset has no test split.
PAPER_TEST_FRACTION = 1 / 6


def get_classification_cfg() -> CfgNode:
    """A fresh config holding the defaults (digits, small CNN, the paper's proportions)."""
    cfg = CfgNode()
    cfg.DATA = CfgNode()
    cfg.DATA.NAME = "digits"  # "digits" (scikit-learn, always present), "cifar10" or "fashion_mnist" (files on disk)
    cfg.DATA.ROOT = (
        "datasets"  # CIFAR-10: holds cifar-10-batches-py/; Fashion-MNIST: the four .gz IDX files
    )
    cfg.DATA.CACHE_DIR = (
        "datasets"  # Fashion-MNIST: the .gz files are unpacked to CACHE_DIR/FashionMNIST/raw/
    )
    cfg.DATA.LABELLED_FRACTION = (
        PAPER_LABELLED_FRACTION  # labelled share of the training pool; rest = additional
    )
    cfg.DATA.TEST_FRACTION = (
        PAPER_TEST_FRACTION  # held out as test set where the dataset has no test split
    )
    cfg.DATA.SPLIT_SEED = (
        0  # one split for every training seed, so that runs are paired on the same images
    )
    cfg.DATA.VERIFY_CHECKSUMS = True  # CIFAR-10: check torchvision's MD5 sums of the official files

    cfg.MODEL = CfgNode()
    cfg.MODEL.NAME = "small_cnn"  # "small_cnn" | "vgg_small" | "vgg16" | "vgg16_bn" | "resnet18"
    cfg.MODEL.WIDTH = (
        0  # channels of the first stage; 0 = the model's usual width (ResNet18: 64, vgg_small: 16)
    )
    cfg.MODEL.STEM_STRIDE = (
        1  # ResNet18: stride of the 3x3 stem (2 quarters the cost on 28x28 inputs)
    )

    cfg.SOLVER = CfgNode()
    cfg.SOLVER.EPOCHS_LABELLED = 100  # phase 1: labelled images only (paper: 100)
    cfg.SOLVER.EPOCHS_ADDITIONAL = (
        100  # phase 2: labelled + selected additional images (paper: 100 more)
    )
    cfg.SOLVER.BATCH_SIZE = 128
    cfg.SOLVER.BASE_LR = 1e-3  # Adam learning rate
    cfg.SOLVER.WEIGHT_DECAY = 0.0

    cfg.TEST = CfgNode()
    cfg.TEST.BATCH_SIZE = 512  # inference batch size (references, scoring, evaluation)

    cfg.IMAGESCORE = CfgNode()
    cfg.IMAGESCORE.ALPHAS = (
        0.3,
    ) * 10  # alpha_c: share of the additional images predicted as c that is added
    cfg.IMAGESCORE.FORMULA = constants.FORMULA
    cfg.IMAGESCORE.THRESHOLD_RATIO = constants.THRESHOLD_RATIO
    cfg.IMAGESCORE.THRESHOLD_STAT = constants.THRESHOLD_STAT

    cfg.SIGNIFICANCE = CfgNode()
    cfg.SIGNIFICANCE.RESAMPLES = 10000  # bootstrap resamples (paper: 10,000)
    cfg.SIGNIFICANCE.SEED = 0  # fixed, so that p-values repeat

    cfg.REPORT = CfgNode()
    cfg.REPORT.SCORE_BINS = 8  # equal-width image-score intervals in the accuracy-by-score figure

    cfg.SEEDS = (0, 1, 2, 3, 4)  # training seeds (model initialisation, batch order, dropout)
    cfg.DEVICE = "auto"  # "auto" = cuda when available, else cpu
    return cfg


def load_classification_config(path: str, opts: Sequence[str] = ()) -> CfgNode:
    """Defaults, then the YAML file, then ``KEY VALUE`` overrides; frozen and checked.

    Raises ``ValueError`` naming the file (or override) for unknown keys, wrong types or bad values.
    """
    cfg = get_classification_cfg()
    try:
        cfg.merge_from_file(path)
    except (KeyError, ValueError, AssertionError) as error:
        raise ValueError("%s: %s" % (path, error)) from error
    try:
        cfg.merge_from_list(list(opts))
    except (KeyError, ValueError, AssertionError) as error:
        raise ValueError("command-line override %s: %s" % (list(opts), error)) from error
    check_classification_cfg(cfg, source=path)
    cfg.freeze()
    return cfg


def check_classification_cfg(cfg: CfgNode, source: str = "config") -> None:
    """Refuse values that would fail later, naming the key at fault."""
    problems = []
    if cfg.DATA.NAME not in DATASET_NAMES:
        problems.append("DATA.NAME must be one of %s, got %r" % (DATASET_NAMES, cfg.DATA.NAME))
    if not 0.0 < cfg.DATA.LABELLED_FRACTION < 1.0:
        problems.append(
            "DATA.LABELLED_FRACTION must lie in (0, 1), got %r" % cfg.DATA.LABELLED_FRACTION
        )
    if not 0.0 < cfg.DATA.TEST_FRACTION < 1.0:
        problems.append("DATA.TEST_FRACTION must lie in (0, 1), got %r" % cfg.DATA.TEST_FRACTION)
    if cfg.MODEL.NAME not in MODEL_NAMES:
        problems.append("MODEL.NAME must be one of %s, got %r" % (MODEL_NAMES, cfg.MODEL.NAME))
    if cfg.MODEL.WIDTH < 0 or cfg.MODEL.STEM_STRIDE < 1:
        problems.append("MODEL.WIDTH must be >= 0 and MODEL.STEM_STRIDE >= 1")
    for key in ("EPOCHS_LABELLED", "EPOCHS_ADDITIONAL"):
        if cfg.SOLVER[key] < 0:
            problems.append("SOLVER.%s must be >= 0, got %r" % (key, cfg.SOLVER[key]))
    if cfg.SOLVER.BATCH_SIZE < 1 or cfg.TEST.BATCH_SIZE < 1:
        problems.append("SOLVER.BATCH_SIZE and TEST.BATCH_SIZE must be >= 1")
    if any(not 0.0 <= float(a) <= 1.0 for a in cfg.IMAGESCORE.ALPHAS):
        problems.append("IMAGESCORE.ALPHAS must lie in [0, 1], got %r" % (cfg.IMAGESCORE.ALPHAS,))
    if cfg.IMAGESCORE.FORMULA not in constants.FORMULAS:
        problems.append("IMAGESCORE.FORMULA must be one of %s" % (constants.FORMULAS,))
    if cfg.IMAGESCORE.THRESHOLD_STAT not in constants.THRESHOLD_STATS:
        problems.append(
            "IMAGESCORE.THRESHOLD_STAT must be one of %s" % (constants.THRESHOLD_STATS,)
        )
    if cfg.SIGNIFICANCE.RESAMPLES < 1 or cfg.REPORT.SCORE_BINS < 1:
        problems.append("SIGNIFICANCE.RESAMPLES and REPORT.SCORE_BINS must be >= 1")
    if not cfg.SEEDS:
        problems.append("SEEDS must list at least one seed")
    if problems:
        raise ValueError("%s: %s" % (source, "; ".join(problems)))
