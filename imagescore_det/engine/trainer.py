"""Detectron2's DefaultTrainer with the swap hook, an evaluator per test set and a training loader
that can take on a pseudo-labelled stream (docs/method.md §2 step 7).

Only what differs is overridden: the evaluator (by the test set's ``evaluator_type``: VOC AP50, the
paper's metric, with COCO-style AP beside it, or COCOEvaluator; see
:mod:`imagescore_det.evaluation.evaluators`), the hook list (DefaultTrainer's hooks plus the swap
hook, or the mean teacher's, placed before the checkpointer so that a checkpoint written at the swap
iteration already records the swap) and the train loader, a :class:`PseudoLabelTrainLoader` that the
swap, or the mean teacher, extends through ``trainer.data_loader`` (docs/method.md §2 item 8).
"""

import logging
import math
import os
from typing import Iterable, Iterator, List, Optional

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.data import build_detection_train_loader  # noqa: E402
from detectron2.engine import DefaultTrainer, hooks
from detectron2.evaluation.testing import flatten_results_dict  # noqa: E402
from detectron2.utils import comm  # noqa: E402

from ..data.pseudo_mapper import PseudoLabelDatasetMapper  # noqa: E402
from ..detection.selection import output_paths
from ..evaluation.evaluators import ap50, ap50_text, build_evaluator  # noqa: E402
from ..modeling.checkpoint import check_checkpoint_fits  # noqa: E402
from .hooks import (  # noqa: E402
    EVALUATIONS_FILE,
    REGIMES,
    STUDENT_SUFFIX,
    EvaluationLog,
    PseudoLabelSwapHook,
)
from .mean_teacher import TEACHER_CHECKPOINTABLE, MeanTeacherHook  # noqa: E402

__all__ = ["ImageScoreTrainer", "PseudoLabelTrainLoader", "pseudo_ims_per_batch"]

logger = logging.getLogger(__name__)


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


class PseudoLabelTrainLoader:
    """The training stream: the labelled loader's batches, each followed by a pseudo-labelled batch
    once a stream is attached (:meth:`attach_pseudo`).

    Attaching never restarts the labelled stream, so labelled images keep their share of updates
    and come in the same order as without pseudo labels (TrainingSampler has its own generator).
    Both loaders are Detectron2's infinite train loaders (per-process batches). Their random
    augmentations may differ from a run without the pseudo stream: with DATALOADER.NUM_WORKERS 0
    both mappers draw from NumPy's global generator.
    """

    def __init__(self, labelled: Iterable[List[dict]]):
        self.labelled = labelled
        self.pseudo: Optional[Iterable[List[dict]]] = None
        self._labelled_batches: Optional[Iterator] = None
        self._pseudo_batches: Optional[Iterator] = None

    def attach_pseudo(self, pseudo: Optional[Iterable[List[dict]]]) -> None:
        """From the next batch on, add ``pseudo``'s next batch to each labelled one (None: stop)."""
        self.pseudo, self._pseudo_batches = pseudo, None

    def replace_labelled(self, labelled: Iterable[List[dict]]) -> None:
        """From the next batch on, read ``labelled`` from its start instead of the current labelled loader."""
        self.labelled, self._labelled_batches = labelled, None

    def __iter__(self) -> Iterator[List[dict]]:
        while True:
            if self._labelled_batches is None:
                self._labelled_batches = iter(self.labelled)
            batch = next(self._labelled_batches, None)
            if batch is None:
                return
            batch = list(batch)
            if self.pseudo is not None:
                batch += list(self._next_pseudo_batch())
            yield batch

    def _next_pseudo_batch(self) -> List[dict]:
        """The pseudo stream's next batch; a finite loader (Detectron2's never end) starts again."""
        if self._pseudo_batches is not None:
            pseudo = next(self._pseudo_batches, None)
            if pseudo is not None:
                return pseudo
        self._pseudo_batches = iter(self.pseudo)
        pseudo = next(self._pseudo_batches, None)
        if pseudo is None:
            raise ValueError("the attached pseudo-labelled loader yields no batch")
        return pseudo


class ImageScoreTrainer(DefaultTrainer):
    """Trains on ``DATASETS.TRAIN`` and, in the ``swap`` regime, from ``IMAGESCORE.SWAP_ITER`` on, on
    its pseudo labels too; in the ``mean_teacher`` regime, on an EMA teacher's online pseudo labels.

    ``swap_hook`` is the :class:`PseudoLabelSwapHook` in use (None in the other regimes); it
    evaluates on ``DATASETS.TEST`` just before each swap, so the log shows the accuracy before and
    (EvalHook) after it. ``mean_teacher`` is the :class:`MeanTeacherHook` (None in the other
    regimes); its teacher is a checkpointable and is what EvalHook evaluates once it has started,
    the student beside it (:meth:`test_teacher_and_student`). Every evaluation also goes to
    ``OUTPUT_DIR/evaluations.jsonl`` (:class:`EvaluationLog`), whatever the metrics writer's period.
    """

    def resume_or_load(self, resume=True):
        """DefaultTrainer's, after checking that a checkpoint to resume from fits the model
        (MODEL.WEIGHTS for a new run may differ on purpose: ImageNet weights have no heads)."""
        if resume and self.checkpointer.has_checkpoint():
            check_checkpoint_fits(self.checkpointer.model, self.checkpointer.get_checkpoint_file())
        super().resume_or_load(resume=resume)

    @classmethod
    def test_checkpoint(cls, cfg, weights: str, *, resume: bool = False):
        """train_net's --eval-only: :meth:`model_to_test` tested on DATASETS.TEST."""
        return cls.test(cfg, cls.model_to_test(cfg, weights, resume=resume))

    @classmethod
    def model_to_test(cls, cfg, weights: str, *, resume: bool = False):
        """A new model with ``weights`` (with ``resume``, OUTPUT_DIR's last checkpoint where there is
        one), checked to fit first. A checkpoint of the mean_teacher regime holds the teacher beside
        the student: the model gets the teacher, as the training's evaluations and the study report
        it."""
        model = cls.build_model(cfg)
        checkpointer = DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR)
        path = (
            checkpointer.get_checkpoint_file()
            if resume and checkpointer.has_checkpoint()
            else weights
        )
        if os.path.isfile(path):
            check_checkpoint_fits(model, path)
        extra = checkpointer.resume_or_load(weights, resume=resume)
        if TEACHER_CHECKPOINTABLE in extra:
            logger.info("Testing the mean teacher of %s (the student is its 'model')", path)
            model.load_state_dict(extra[TEACHER_CHECKPOINTABLE])
        return model

    @classmethod
    def build_train_loader(cls, cfg) -> PseudoLabelTrainLoader:
        """Detectron2's train loader over DATASETS.TRAIN, ready to take on a pseudo-labelled stream."""
        return PseudoLabelTrainLoader(build_detection_train_loader(cfg))

    @classmethod
    def build_pseudo_loader(cls, cfg, datasets, mapper_class=PseudoLabelDatasetMapper):
        """A train loader over ``datasets`` (a name or names) with PSEUDO_RATIO x SOLVER.IMS_PER_BATCH
        images per batch, through ``mapper_class`` (:class:`PseudoLabelDatasetMapper`); None where
        that is 0 images."""
        count = pseudo_ims_per_batch(cfg)
        if count == 0:
            return None
        pseudo_cfg = cfg.clone()
        pseudo_cfg.defrost()
        pseudo_cfg.DATASETS.TRAIN = (datasets,) if isinstance(datasets, str) else tuple(datasets)
        pseudo_cfg.SOLVER.IMS_PER_BATCH = count
        return build_detection_train_loader(pseudo_cfg, mapper=mapper_class(pseudo_cfg, True))

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return build_evaluator(cfg, dataset_name, output_folder)

    def build_hooks(self):
        regime = self.cfg.IMAGESCORE.REGIME
        if regime not in REGIMES:
            raise ValueError("IMAGESCORE.REGIME is %r; choose one of %s" % (regime, REGIMES))
        hook_list = super().build_hooks()
        evaluation = next(i for i, hook in enumerate(hook_list) if isinstance(hook, hooks.EvalHook))
        hook_list.insert(
            evaluation + 1, EvaluationLog(os.path.join(self.cfg.OUTPUT_DIR, EVALUATIONS_FILE))
        )
        self.swap_hook = self.mean_teacher = None
        if regime == "swap":
            evaluate = (
                (lambda: self.test(self.cfg, self.model)) if len(self.cfg.DATASETS.TEST) else None
            )
            self.swap_hook = PseudoLabelSwapHook(self.cfg, evaluate=evaluate)
        elif regime == "mean_teacher":
            self.mean_teacher = MeanTeacherHook(self.cfg, self.model)
            self.checkpointer.add_checkpointable(TEACHER_CHECKPOINTABLE, self.mean_teacher.teacher)
            hook_list[evaluation] = hooks.EvalHook(
                self.cfg.TEST.EVAL_PERIOD, self.test_teacher_and_student
            )
        regime_hook = self.swap_hook or self.mean_teacher
        if regime_hook is not None:
            later = (hooks.PeriodicCheckpointer, hooks.EvalHook, hooks.PeriodicWriter)
            position = next(i for i, hook in enumerate(hook_list) if isinstance(hook, later))
            hook_list.insert(position, regime_hook)
        return hook_list

    def test_teacher_and_student(self):
        """EvalHook's evaluation in the mean_teacher regime. Once the teacher has started, its results
        under Detectron2's keys (``bbox/AP50``: what a study reads) with the student's beside them,
        each group's name + ``_student`` (``bbox_student/AP50``), as Unbiased Teacher reports them;
        before, the student's alone."""
        if not self.mean_teacher.started:
            return self.test(self.cfg, self.model)
        logger.info(
            "Evaluating the mean teacher (the EMA of the student) after %d iterations",
            min(self.iter + 1, self.max_iter),
        )
        teacher = self.test(self.cfg, self.mean_teacher.teacher)
        logger.info("Evaluating the student beside it (results as <group>%s/...)", STUDENT_SUFFIX)
        student = self.test(self.cfg, self.model)
        return {**teacher, **{key + STUDENT_SUFFIX: value for key, value in student.items()}}

    def log_summary(self) -> None:
        """Log AP50 before the first swap and at the end, and where the files went (main process)."""
        cfg, hook = self.cfg, self.swap_hook
        test_sets = ", ".join(cfg.DATASETS.TEST)
        for done, results in list(hook.evaluations.items() if hook else [])[:1]:
            flat = flatten_results_dict(results)
            logger.info(
                "AP50 on %s before the swap (iteration %d): %s",
                test_sets,
                done,
                ap50_text(cfg.DATASETS.TEST[0], flat),
            )
        if ap50(self.storage.latest()) is not None:
            latest = ap50_text(cfg.DATASETS.TEST[0], self.storage.latest())
            student = ap50(self.storage.latest(), "bbox" + STUDENT_SUFFIX)
            if student is not None:
                latest += " (the mean teacher; the student: %.2f)" % student
            logger.info(
                "AP50 on %s at the end (iteration %d): %s", test_sets, self.max_iter, latest
            )
        if hook and hook.swap_iter >= 0:
            files = output_paths(cfg)
            logger.info(
                "Pseudo labels: %s; scores: %s; histogram: %s; reference: %s",
                files["pseudo_labels"],
                files["scores"],
                files["histogram"],
                files["reference"],
            )
        logger.info("Checkpoints, metrics.json and the log are in %s", cfg.OUTPUT_DIR)
