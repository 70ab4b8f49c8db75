"""Detectron2's DefaultTrainer with the swap hook and an evaluator per test set (SPEC §2 step 7).

Only what differs is overridden: the evaluator (by the test set's ``evaluator_type``: VOC AP50, the
paper's metric, with COCO-style AP beside it, or COCOEvaluator; see :mod:`.evaluation`) and the
hook list (DefaultTrainer's hooks plus the swap hook, placed before the checkpointer so that a
checkpoint written at the swap iteration already records the swap).
"""
from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.engine import DefaultTrainer, hooks  # noqa: E402

from .evaluation import build_evaluator  # noqa: E402
from .hooks import PseudoLabelSwapHook  # noqa: E402

__all__ = ["ImageScoreTrainer"]


class ImageScoreTrainer(DefaultTrainer):
    """Trains on ``DATASETS.TRAIN`` and, from ``IMAGESCORE.SWAP_ITER`` on, on its pseudo labels too.

    ``swap_hook`` is the :class:`PseudoLabelSwapHook` in use; it evaluates on ``DATASETS.TEST``
    just before each swap, so the log shows the accuracy before and (EvalHook) after it.
    """

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return build_evaluator(cfg, dataset_name, output_folder)

    def build_hooks(self):
        hook_list = super().build_hooks()
        evaluate = (lambda: self.test(self.cfg, self.model)) if len(self.cfg.DATASETS.TEST) else None
        self.swap_hook = PseudoLabelSwapHook(self.cfg, evaluate=evaluate)
        later = (hooks.PeriodicCheckpointer, hooks.EvalHook, hooks.PeriodicWriter)
        position = next(i for i, hook in enumerate(hook_list) if isinstance(hook, later))
        hook_list.insert(position, self.swap_hook)
        return hook_list
