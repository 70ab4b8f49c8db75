"""Detectron2 side of the method: scoring over a dataset, the swap hook and the trainer (docs/method.md §2)."""
from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from ..data import voc as _voc  # noqa: E402,F401  (only registration: synthetic datasets)
from .evaluation import build_evaluator, protocol_of  # noqa: E402
from .hooks import PseudoLabelSwapHook  # noqa: E402
from .scoring import build_reference, score_images, score_unlabelled  # noqa: E402
from .selection import STRATEGIES, output_paths, select_by_strategy, write_selection  # noqa: E402
from .selection_quality import compare_strategies, format_table  # noqa: E402
from .trainer import ImageScoreTrainer  # noqa: E402

__all__ = [
    "ImageScoreTrainer",
    "PseudoLabelSwapHook",
    "build_evaluator",
    "protocol_of",
    "build_reference",
    "score_images",
    "score_unlabelled",
    "output_paths",
    "write_selection",
    "compare_strategies",
    "format_table",
    "select_by_strategy",
    "STRATEGIES",
]
