"""Detectron2's DefaultTrainer with the swap hook and an evaluator per test set (docs/method.md §2 step 7).

Only what differs is overridden: the evaluator (by the test set's ``evaluator_type``: VOC AP50, the
paper's metric, with COCO-style AP beside it, or COCOEvaluator; see :mod:`.evaluation`), the
hook list (DefaultTrainer's hooks plus the swap hook, placed before the checkpointer so that a
checkpoint written at the swap iteration already records the swap) and the train loader, which after
the swap zips the labelled loader with a pseudo-labelled one (docs/method.md §2 item 8).
"""
import math
from typing import Iterable, Iterator, List, Optional

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.data import build_detection_train_loader  # noqa: E402
from detectron2.engine import DefaultTrainer, hooks  # noqa: E402
from detectron2.utils import comm  # noqa: E402

from ..data.pseudo_mapper import PseudoLabelDatasetMapper  # noqa: E402
from .evaluation import build_evaluator  # noqa: E402
from .hooks import PseudoLabelSwapHook  # noqa: E402

__all__ = ["ImageScoreTrainer", "MixedTrainLoader", "pseudo_ims_per_batch"]


def pseudo_ims_per_batch(cfg) -> int:
    """Pseudo-labelled images per batch, all GPUs together: PSEUDO_RATIO x SOLVER.IMS_PER_BATCH."""
    ratio = cfg.IMAGESCORE.PSEUDO_TRAINING.PSEUDO_RATIO
    count = ratio * cfg.SOLVER.IMS_PER_BATCH
    world = comm.get_world_size()
    if ratio < 0 or not math.isclose(count, round(count)) or round(count) % world:
        raise ValueError(
            "IMAGESCORE.PSEUDO_TRAINING.PSEUDO_RATIO=%g x SOLVER.IMS_PER_BATCH=%d must be a whole number of "
            "images divisible by the %d processes" % (ratio, cfg.SOLVER.IMS_PER_BATCH, world)
        )
    return int(round(count))


class MixedTrainLoader:
    """Each batch: the labelled loader's next batch followed by the pseudo-labelled loader's next batch.

    Both loaders are Detectron2's infinite train loaders (per-process batches), so labelled images
    keep their share of updates, and, when the labelled loader goes on from before the swap, the
    same images in the same order as without pseudo labels (TrainingSampler has its own generator).
    Their random augmentations may differ: with DATALOADER.NUM_WORKERS 0 both mappers draw from
    NumPy's global generator.
    """

    def __init__(self, labelled: Iterable[List[dict]], pseudo: Iterable[List[dict]]):
        self.labelled = labelled
        self.pseudo = pseudo

    def __iter__(self) -> Iterator[List[dict]]:
        for labelled, pseudo in zip(self.labelled, self.pseudo):
            yield list(labelled) + list(pseudo)


class ImageScoreTrainer(DefaultTrainer):
    """Trains on ``DATASETS.TRAIN`` and, from ``IMAGESCORE.SWAP_ITER`` on, on its pseudo labels too.

    ``swap_hook`` is the :class:`PseudoLabelSwapHook` in use; it evaluates on ``DATASETS.TEST``
    just before each swap, so the log shows the accuracy before and (EvalHook) after it.
    """

    @classmethod
    def build_train_loader(cls, cfg, pseudo_dataset: str = "", labelled: Optional[Iterable[List[dict]]] = None):
        """Detectron2's train loader over DATASETS.TRAIN (or ``labelled``, an existing one, to continue
        its stream), zipped with a loader over ``pseudo_dataset`` when one is named and
        PSEUDO_RATIO > 0; pseudo-labelled records go through :class:`PseudoLabelDatasetMapper`."""
        labelled = super().build_train_loader(cfg) if labelled is None else labelled
        count = pseudo_ims_per_batch(cfg) if pseudo_dataset else 0
        if count == 0:
            return labelled
        pseudo_cfg = cfg.clone()
        pseudo_cfg.defrost()
        pseudo_cfg.DATASETS.TRAIN = (pseudo_dataset,)
        pseudo_cfg.SOLVER.IMS_PER_BATCH = count
        pseudo = build_detection_train_loader(pseudo_cfg, mapper=PseudoLabelDatasetMapper(pseudo_cfg, True))
        return MixedTrainLoader(labelled, pseudo)

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
