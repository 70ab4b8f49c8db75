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
    # "swap" (the paper: pseudo labels join training at SWAP_ITER), "labelled_only" (they never
    # do: the labelled-only control, trained by the same trainer) or "mean_teacher" (from SWAP_ITER on,
    # an EMA teacher pseudo-labels every unlabelled batch online, as Unbiased Teacher does: MEAN_TEACHER).
    _C.IMAGESCORE.REGIME = "swap"
    # Iteration at which the unlabelled set is scored and the pseudo-labelled images join training
    # (mean_teacher: the end of the labelled-only burn-in, where the teacher starts as a copy of the student).
    _C.IMAGESCORE.SWAP_ITER = 60000
    # 0 = score once at SWAP_ITER; N > 0 = score again every N iterations after it.
    _C.IMAGESCORE.UPDATE_PERIOD = 0

    # ---- Selection and pseudo-labels.
    # Share of the unlabelled set kept, best first by IMAGESCORE.SELECTION (ties broken by image id).
    _C.IMAGESCORE.SELECT_FRACTION = constants.SELECT_FRACTION
    # How the kept images are chosen: "image_score" (the method), "confidence" (mean detection
    # confidence, the paper's softmax baseline), "random" (drawn with cfg.SEED, which must be >= 0),
    # "all" (every unlabelled image, STAC-style; SELECT_FRACTION is ignored) or "box_filter" (every
    # image as "all", each pseudo box kept only where its box score clears BOX.FILTER_QUANTILE; needs
    # SCORE_MODE "box").
    _C.IMAGESCORE.SELECTION = "image_score"
    # Detections of the current model with at least this confidence become pseudo-labels.
    _C.IMAGESCORE.PSEUDO_SCORE_THRESH = 0.7
    # Keep a selected image whose detections all fall below PSEUDO_SCORE_THRESH (as an image without boxes).
    _C.IMAGESCORE.KEEP_EMPTY = False

    # ---- Training on pseudo labels (docs/method.md §2 item 8). Used by MODEL.META_ARCHITECTURE "ImageScoreRCNN",
    # MODEL.PROPOSAL_GENERATOR.NAME "ImageScoreRPN" and MODEL.ROI_HEADS.NAME "ImageScore{Standard,Res5}ROIHeads";
    # with them, labelled images train exactly as in plain Detectron2. The defaults are conservative;
    # tools/ssod_study.py measures which values the demo/voc configs should choose.
    _C.IMAGESCORE.PSEUDO_TRAINING = CN()
    # False = the pre-item-8 path: pseudo-labelled images join DATASETS.TRAIN and train like labelled ones.
    _C.IMAGESCORE.PSEUDO_TRAINING.ENABLED = True
    # Pseudo-labelled images per batch = PSEUDO_RATIO x SOLVER.IMS_PER_BATCH (labelled images per batch stay
    # SOLVER.IMS_PER_BATCH, the control's stream); the product must be a whole multiple of the GPU count.
    _C.IMAGESCORE.PSEUDO_TRAINING.PSEUDO_RATIO = 1.0
    # On pseudo-labelled images, anchors/proposals matching no pseudo box are ignored instead of background.
    _C.IMAGESCORE.PSEUDO_TRAINING.IGNORE_UNMATCHED = True
    # Teacher detections with confidence in [IGNORE_SCORE_THRESH, PSEUDO_SCORE_THRESH) are stored as ignore
    # boxes (>= PSEUDO_SCORE_THRESH: none); they matter when IGNORE_UNMATCHED is False.
    _C.IMAGESCORE.PSEUDO_TRAINING.IGNORE_SCORE_THRESH = 1.0
    # Unmatched anchors/proposals with at least this IoU with an ignore box are ignored, not background.
    _C.IMAGESCORE.PSEUDO_TRAINING.IGNORE_IOU_THRESH = 0.3
    # Weight of the pseudo-labelled images' classification and objectness losses.
    _C.IMAGESCORE.PSEUDO_TRAINING.CLS_WEIGHT = 1.0
    # Weight of their box-regression losses (Unbiased Teacher: 0).
    _C.IMAGESCORE.PSEUDO_TRAINING.REG_WEIGHT = 1.0
    # Total loss = labelled losses + LAMBDA_U x weighted pseudo-labelled losses (logged as loss_pseudo_*).
    _C.IMAGESCORE.PSEUDO_TRAINING.LAMBDA_U = 1.0
    # Unbiased Teacher's strong view (colour jitter, blur, cutout) on pseudo-labelled images only (geometry as labelled).
    _C.IMAGESCORE.PSEUDO_TRAINING.STRONG_AUGMENTATION = False
    # ---- The online mean teacher (REGIME "mean_teacher", engine/mean_teacher.py). Each iteration the
    # teacher (eval mode, no gradient) labels PSEUDO_RATIO x SOLVER.IMS_PER_BATCH unlabelled images in the
    # weak view (the labelled geometry) at PSEUDO_SCORE_THRESH; the student learns them in the strong view
    # (PSEUDO_TRAINING, STRONG_AUGMENTATION: photometric only, so the teacher's boxes hold) beside the labelled batch.
    _C.IMAGESCORE.MEAN_TEACHER = CN()
    # teacher <- EMA_DECAY x teacher + (1 - EMA_DECAY) x student after every step. Unbiased Teacher's 0.9996
    # averages over ~2,500 of its 180k iterations; the demo has 600 after the burn-in, where 0.9996 would
    # leave the teacher at the burn-in model (0.9996^600 = 0.79 of its weight). 0.99 averages over
    # ~100 iterations (half-life 69): the burn-in model has faded (0.99^400 < 2 %) by the evaluations at
    # 2800 and 3000, and each label still comes from an average of many student steps.
    _C.IMAGESCORE.MEAN_TEACHER.EMA_DECAY = 0.99
    # Image-score gate on the online pseudo labels: "none" (the teacher's confidence alone: Unbiased
    # Teacher's rule), "image" (an image is kept only if its image score clears the threshold) or "box"
    # (each pseudo box must clear its class's threshold, scored against per-class references of the
    # labelled set's ground-truth boxes in the teacher's box head). Scored in the teacher's labelling pass.
    _C.IMAGESCORE.MEAN_TEACHER.GATE = "none"
    # The threshold is this quantile of the labelled set's own scores (box: per class): 0.05 drops what is
    # less typical than 95 % of the labelled images (boxes).
    _C.IMAGESCORE.MEAN_TEACHER.GATE_QUANTILE = 0.05
    # The references and thresholds are built from the teacher at the end of the burn-in and rebuilt every
    # REFERENCE_PERIOD iterations after it (0 = never rebuilt); the gate's drops are logged per period.
    _C.IMAGESCORE.MEAN_TEACHER.REFERENCE_PERIOD = 200

    # ---- The synthetic VOC-format set (imagescore_det.data.synthetic), generated when a config names
    # its datasets; each (sizes, seed, distractors) lives in a folder of its own under $DETECTRON2_DATASETS.
    _C.IMAGESCORE.SYNTHETIC = CN()
    # Images in the labelled split (synthetic_voc_2007_trainval).
    _C.IMAGESCORE.SYNTHETIC.NUM_LABELLED = 240
    # Images in the unlabelled split (synthetic_voc_2012_trainval; its annotations are kept as ground truth).
    _C.IMAGESCORE.SYNTHETIC.NUM_UNLABELLED = 360
    # Images in the test split (synthetic_voc_2007_test).
    _C.IMAGESCORE.SYNTHETIC.NUM_TEST = 120
    # Generator seed: with the sizes it fixes every byte of the set.
    _C.IMAGESCORE.SYNTHETIC.SEED = 0
    # Share of the unlabelled split that are distractors, in [0, 1): an uncurated pool (issue 18). The
    # labelled and test splits never change with it or with DISTRACTORS; 0 is the clean set, bit for bit.
    _C.IMAGESCORE.SYNTHETIC.DISTRACTOR_FRACTION = 0.0
    # The distractor kinds, in equal shares: "novel" (shapes of no labelled class), "empty" (no object),
    # "shifted" (the labelled classes in another look), "photos" (crops of scikit-image's photos). Each
    # unlabelled image's kind is in its annotation and its dataset dict ("kind"); only "shifted" has objects.
    _C.IMAGESCORE.SYNTHETIC.DISTRACTORS = ["novel", "empty", "shifted", "photos"]

    # ---- The image score (docs/method.md §1).
    # Each activation is cropped to its image and average-pooled to C x GRID x GRID (0 = native size).
    _C.IMAGESCORE.GRID = constants.GRID
    # Threshold t[l] = THRESHOLD_RATIO * THRESHOLD_STAT(mean[l]).
    _C.IMAGESCORE.THRESHOLD_RATIO = constants.THRESHOLD_RATIO
    # "max" (the paper's L-infinity), "l1" (mean |x|) or "l2" (root mean square).
    _C.IMAGESCORE.THRESHOLD_STAT = constants.THRESHOLD_STAT
    # "overlap" (units active in both the image and the reference) or "count" (all of the image's active units).
    _C.IMAGESCORE.FORMULA = constants.FORMULA

    # "image" scores whole images against one reference (the paper); "box" scores each pseudo box
    # against the reference of its class, built from the labelled set's ground-truth boxes.
    _C.IMAGESCORE.SCORE_MODE = "image"
    _C.IMAGESCORE.BOX = CN()
    # Module names inside model.roi_heads recorded per box; [] = ROI-pooled map + box head (fc6/fc7 after ReLU, or res5).
    _C.IMAGESCORE.BOX.LAYERS = []
    # How an image's pseudo boxes make its score: "min" (its least typical box) or "mean".
    _C.IMAGESCORE.BOX.AGGREGATE = "min"
    # What box mode ranks images by: "score" (the box score) or "score_x_confidence" (product of the two ranks).
    _C.IMAGESCORE.BOX.RANKING = "score"
    # SELECTION "box_filter" keeps a pseudo box whose box score is at least this quantile of the
    # labelled set's own ground-truth box scores (one more pass over the labelled set measures them);
    # a box below it becomes an ignore box. In [0, 1]; 0.1 is not yet measured against other values.
    _C.IMAGESCORE.BOX.FILTER_QUANTILE = 0.1

    # ---- The reference and scoring passes at scale.
    # Images per batch of both passes (Detectron2's test loader); the recorder crops each padded
    # activation to its image, so padding is never pooled (docs/performance.md measures the speed).
    _C.IMAGESCORE.SCORE_BATCH_SIZE = 1
    # The scoring pass writes its per-image records every SCORE_SHARD_SIZE images (per process) to
    # SCORE_SHARD_DIR; a rerun or a restarted swap reuses the finished shards. 0 = keep them in memory only.
    _C.IMAGESCORE.SCORE_SHARD_SIZE = 500
    # Folder of the shards, relative to OUTPUT_DIR (tools/score_voc.py: to its --output-dir); the swap
    # hook uses a subfolder per scoring iteration. A shard of another model/config/dataset is refused.
    _C.IMAGESCORE.SCORE_SHARD_DIR = "scoring_shards"

    # ---- Outputs; relative paths resolve inside cfg.OUTPUT_DIR.
    # Reference built from the labelled set (Reference.save format; box mode: ClassReferences.save).
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
