"""Classification mode (paper §3.1, docs/method.md §3): per-class image scores, softmax baseline,
bootstrap significance and model assembly. PyTorch, torchvision and scikit-learn only; never Detectron2.
"""

from .assembly import assemble_predictions
from .config import get_classification_cfg, load_classification_config
from .data import ClassificationSplit, ImageSet, load_split, stratified_split
from .experiment import MODES, run_experiment, run_seed, variants_for
from .inference import Predictions, build_class_references, predict_and_score
from .metrics import accuracy_by_interval, failure_auroc, score_interval_edges
from .models import build_model, recorded_layers
from .selection import SELECTION_MODES, boost_alphas, select_additional
from .significance import bootstrap_p_value, paired_difference
from .training import TrainingState, seed_everything, train_epoch

__all__ = [
    "assemble_predictions",
    "get_classification_cfg",
    "load_classification_config",
    "ClassificationSplit",
    "ImageSet",
    "load_split",
    "stratified_split",
    "MODES",
    "run_experiment",
    "run_seed",
    "variants_for",
    "Predictions",
    "build_class_references",
    "predict_and_score",
    "accuracy_by_interval",
    "failure_auroc",
    "score_interval_edges",
    "build_model",
    "recorded_layers",
    "SELECTION_MODES",
    "boost_alphas",
    "select_additional",
    "bootstrap_p_value",
    "paired_difference",
    "TrainingState",
    "seed_everything",
    "train_epoch",
]
