"""Config keys of imagescore_det, all under ``cfg.IMAGESCORE``."""

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

from imagescore_det.scoring import constants

__all__ = ["add_imagescore_config", "build_config"]


def add_imagescore_config(cfg: CN) -> None:
    """Add the ``IMAGESCORE`` section to ``cfg`` (and touch nothing else)."""
    _C = cfg
    _C.IMAGESCORE = CN()

    # ---- Model: set MODEL.BACKBONE.NAME = "build_imagescore_backbone" to use the recording wrapper.
    # Registered backbone builder that the recording wrapper builds and wraps.
    _C.IMAGESCORE.WRAPPED_BACKBONE = "build_vgg16_backbone"
    # Module names inside the wrapped backbone whose outputs are recorded;
    # [] = the backbone's per-image defaults (VGG16: conv1_1..conv5_3; ResNet: stem and every block).
    _C.IMAGESCORE.LAYERS = []
    _C.IMAGESCORE.VGG = CN()
    # Divides every VGG16 channel width (1 = VGG16 itself; the demo uses a slim VGG); must divide 64.
    _C.IMAGESCORE.VGG.WIDTH_DIVISOR = 1
    # Name of the VGG16 backbone's output feature (conv5_3, stride 16), as RPN/ROI_HEADS.IN_FEATURES name it.
    _C.IMAGESCORE.VGG.OUT_FEATURE = "vgg_conv5"

    # ---- Data (paper §3.2).
    # Datasets the tools register before using any: "NAME=coco:JSON_FILE:IMAGE_DIR",
    # "NAME=voc:DIR:SPLIT[:CLASS1,CLASS2,...]" or "NAME=folder:DIR" (see imagescore_det/data/registry.py).
    _C.IMAGESCORE.REGISTER_DATASETS = []
    # Labelled datasets: the reference set, and the training data before the swap.
    _C.IMAGESCORE.LABELLED_DATASETS = ("voc_2007_trainval",)
    # Unlabelled datasets: scored at the swap; the best are pseudo-labelled and added to training.
    _C.IMAGESCORE.UNLABELLED_DATASETS = ("voc_2012_trainval",)

    # ---- Schedule.
    # Iteration at which the unlabelled set is scored and the pseudo-labelled images join training.
    _C.IMAGESCORE.SWAP_ITER = 60000
    # 0 = score once at SWAP_ITER; N > 0 = score again every N iterations after it.
    _C.IMAGESCORE.UPDATE_PERIOD = 0

    # ---- Selection and pseudo-labels.
    # Share of the unlabelled set kept, best scores first (ties broken by image id).
    _C.IMAGESCORE.SELECT_FRACTION = constants.SELECT_FRACTION
    # Detections of the current model with at least this confidence become pseudo-labels.
    _C.IMAGESCORE.PSEUDO_SCORE_THRESH = 0.7
    # Keep a selected image whose detections all fall below PSEUDO_SCORE_THRESH (as an image without boxes).
    _C.IMAGESCORE.KEEP_EMPTY = False

    # ---- The image score (SPEC §1).
    # Each activation is cropped to its image and average-pooled to C x GRID x GRID (0 = native size).
    _C.IMAGESCORE.GRID = constants.GRID
    # Threshold t[l] = THRESHOLD_RATIO * THRESHOLD_STAT(mean[l]).
    _C.IMAGESCORE.THRESHOLD_RATIO = constants.THRESHOLD_RATIO
    # "max" (the paper's L-infinity), "l1" (mean |x|) or "l2" (root mean square).
    _C.IMAGESCORE.THRESHOLD_STAT = constants.THRESHOLD_STAT
    # "overlap" (units active in both the image and the reference) or "count" (the paper read literally).
    _C.IMAGESCORE.FORMULA = constants.FORMULA

    # ---- Outputs; relative paths resolve inside cfg.OUTPUT_DIR.
    # Reference built from the labelled set (Reference.save format).
    _C.IMAGESCORE.REFERENCE_FILE = "imagescore_reference.pt"
    # COCO-style JSON of the selected images and their pseudo-labels.
    _C.IMAGESCORE.PSEUDO_LABEL_FILE = "pseudo_labels.json"
    # CSV of every scored image: id, file, score, per-layer terms, rank, selected.
    _C.IMAGESCORE.SCORES_FILE = "image_scores.csv"
    # Name under which the pseudo-labelled dataset is registered in DatasetCatalog.
    _C.IMAGESCORE.PSEUDO_DATASET_NAME = "imagescore_pseudo_labels"


def build_config(config_file: str, opts=(), *, freeze: bool = True) -> CN:
    """Detectron2's defaults + the IMAGESCORE keys + ``config_file`` + ``KEY VALUE`` ``opts``: what every tool loads."""
    cfg = get_cfg()
    add_imagescore_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    if freeze:
        cfg.freeze()
    return cfg
