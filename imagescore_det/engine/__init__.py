"""Training, in Detectron2's sense of the word: the trainer, its hooks and the tools' setup
(docs/method.md §2 step 7)."""

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from .defaults import launch_main, setup  # noqa: E402
from .hooks import REGIMES, EvaluationLog, PseudoLabelSwapHook  # noqa: E402
from .mean_teacher import MeanTeacherHook  # noqa: E402
from .trainer import ImageScoreTrainer, PseudoLabelTrainLoader  # noqa: E402

__all__ = [
    "ImageScoreTrainer",
    "PseudoLabelTrainLoader",
    "PseudoLabelSwapHook",
    "MeanTeacherHook",
    "EvaluationLog",
    "REGIMES",
    "setup",
    "launch_main",
]
