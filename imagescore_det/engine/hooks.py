"""The swap hook: at ``IMAGESCORE.SWAP_ITER`` score the unlabelled set, write pseudo labels and
train on labelled + pseudo-labelled images from then on (docs/method.md §2 step 7); and the log
of every evaluation.

The hook only orchestrates; the work is in :mod:`imagescore_det.detection`. Its state (when the
last swap happened, and its file's name relative to OUTPUT_DIR) travels in Detectron2's
checkpoints, so a run resumed after the swap registers this run's file again and swaps its loader
without scoring; where that file is missing or damaged, it scores again with the resumed model.
"""

import json
import logging
import os
from typing import Callable, Dict, Optional

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.engine import HookBase  # noqa: E402
from detectron2.evaluation.testing import flatten_results_dict  # noqa: E402
from detectron2.utils import comm  # noqa: E402

from ..data.pseudo_labels import load_pseudo_labels, register_pseudo_labels  # noqa: E402
from ..detection.modes import score_unlabelled, shard_folder  # noqa: E402
from ..detection.selection import (  # noqa: E402
    labelled_category_ids,
    labelled_class_names,
    output_paths,
    selection_seed,
)
from ..evaluation.selection_gallery import require_visualizer, write_selection_and_gallery  # noqa: E402

__all__ = ["REGIMES", "EVALUATIONS_FILE", "STUDENT_SUFFIX", "PseudoLabelSwapHook", "EvaluationLog"]

logger = logging.getLogger(__name__)

#: The values of IMAGESCORE.REGIME: "swap" (the paper: pseudo labels join training at SWAP_ITER),
#: "labelled_only" (never: the labelled-only control) or "mean_teacher" (online, from an EMA teacher:
#: :mod:`.mean_teacher`).
REGIMES = ("swap", "labelled_only", "mean_teacher")
#: One JSON line per evaluation, in OUTPUT_DIR.
EVALUATIONS_FILE = "evaluations.jsonl"
#: Appended to the result groups of the student evaluated beside the mean teacher (bbox_student/AP50).
STUDENT_SUFFIX = "_student"
#: Result groups an evaluation puts into the EventStorage (VOC or COCO protocol, and COCO-style beside
#: VOC; in the mean_teacher regime the teacher's, and the student's beside them).
EVALUATION_GROUPS = ("bbox", "bbox_coco", "bbox" + STUDENT_SUFFIX, "bbox_coco" + STUDENT_SUFFIX)


class EvaluationLog(HookBase):
    """Appends each evaluation that EvalHook put into the EventStorage to ``path``, one JSON line
    ``{"iteration": iterations done, "bbox/AP50": ..., ...}`` each: a study reads every evaluation
    from it, whatever the period of the metrics writer. A line with the student beside the mean
    teacher (``bbox_student/...``) says ``"model": "teacher"``: whose the plain keys are."""

    def __init__(self, path: str):
        self.path = path
        self.last_iteration = None

    def after_step(self):
        self.write_new()

    def after_train(self):
        self.write_new()

    def write_new(self) -> None:
        latest = self.trainer.storage.latest()
        found = {
            name: value for name, value in latest.items() if name.split("/")[0] in EVALUATION_GROUPS
        }
        if not found or not comm.is_main_process():
            return
        iteration = max(it for _, it in found.values())
        if iteration == self.last_iteration:
            return
        self.last_iteration = iteration
        record = {name: value for name, (value, it) in found.items() if it == iteration}
        if any(name.split("/")[0].endswith(STUDENT_SUFFIX) for name in record):
            record = {"model": "teacher", **record}
        done = min(
            iteration + 1, self.trainer.max_iter
        )  # EvalHook evaluates after iteration `done - 1`
        with open(self.path, "a") as f:
            f.write(json.dumps({"iteration": done, **record}) + "\n")


class PseudoLabelSwapHook(HookBase):
    """Score, select, pseudo-label and swap the training loader after ``SWAP_ITER`` iterations.

    With ``UPDATE_PERIOD`` N > 0 it scores again every N iterations after that (the file is rewritten).

    Args:
        cfg: the training config (``IMAGESCORE.*``, ``DATASETS.TRAIN``, ``OUTPUT_DIR``).
        evaluate: optional callable returning evaluation results, run just before each scoring so the
            log shows the accuracy of the model that makes the pseudo labels.

    Attributes:
        scoring_runs: how many scoring passes this hook ran in this process (0 after a resume that
            only reloaded the pseudo labels).
        swap_iter: iterations done when the last swap happened, or -1 before the first.
        evaluations: ``{iterations done: results of evaluate}``.
    """

    def __init__(self, cfg, *, evaluate: Optional[Callable[[], Dict]] = None):
        selection_seed(cfg)  # a bad IMAGESCORE.SELECTION fails now, not at the swap
        require_visualizer()  # and so does a missing OpenCV, which the swap's gallery needs
        self.cfg = cfg.clone()
        self._evaluate = evaluate
        self.scoring_runs = 0
        self.swap_iter = -1
        self.json_file = output_paths(self.cfg)["pseudo_labels"]
        self.evaluations: Dict[int, Dict] = {}

    def is_due(self, iterations_done: int) -> bool:
        """Whether a scoring pass belongs after ``iterations_done`` iterations."""
        first, period = self.cfg.IMAGESCORE.SWAP_ITER, self.cfg.IMAGESCORE.UPDATE_PERIOD
        if iterations_done == first:
            return True
        return period > 0 and iterations_done > first and (iterations_done - first) % period == 0

    def before_train(self):
        done = self.trainer.iter  # the start iteration: iterations already done
        if self.swap_iter >= 0:
            try:
                load_pseudo_labels(self.json_file)
            except (OSError, ValueError) as error:
                logger.warning(
                    "Resuming after the swap at iteration %d, but its pseudo-label file cannot be read (%s): "
                    "scoring again with the model resumed at iteration %d",
                    self.swap_iter,
                    error,
                    done,
                )
                self._score_and_swap(done)
                return
            logger.info(
                "Resuming after the swap at iteration %d: reloading pseudo labels from %s without scoring again",
                self.swap_iter,
                self.json_file,
            )
            self._swap_loader()
        elif done >= self.cfg.IMAGESCORE.SWAP_ITER:
            logger.info(
                "Starting at iteration %d, past IMAGESCORE.SWAP_ITER with no swap recorded: swapping now",
                done,
            )
            self._score_and_swap(done)

    def after_step(self):
        done = self.trainer.iter + 1
        if self.is_due(done) and done < self.trainer.max_iter:
            self._score_and_swap(done)

    def _score_and_swap(self, done: int) -> None:
        if self._evaluate is not None:
            self.evaluations[done] = self._evaluate()
            flat = flatten_results_dict(self.evaluations[done] or {})
            logger.info(
                "Evaluation before the swap at iteration %d: %s",
                done,
                ", ".join("%s=%.2f" % kv for kv in flat.items()),
            )
        if self.cfg.IMAGESCORE.SCORE_SHARD_SIZE > 0:
            # The scoring shards are only reusable by the same weights: a checkpoint of them, taken
            # before the pass, is what a run killed during the pass resumes from (--resume).
            self.trainer.checkpointer.save("model_%07d" % (done - 1), iteration=done - 1)
        description = "%s at iteration %d" % (self.cfg.MODEL.META_ARCHITECTURE, done)
        references, images = score_unlabelled(
            self.cfg,
            self.trainer.model,
            description=description,
            shard_dir=os.path.join(shard_folder(self.cfg), "iter_%07d" % done),
        )
        self.scoring_runs += 1
        if comm.is_main_process():
            model_info = {
                "iteration": done,
                "output_dir": self.cfg.OUTPUT_DIR,
                "weights": self.cfg.MODEL.WEIGHTS,
            }
            write_selection_and_gallery(
                self.cfg, references[self.cfg.IMAGESCORE.SCORE_MODE], images, model_info=model_info
            )
        comm.synchronize()
        self.swap_iter = done
        self._swap_loader()

    def _swap_loader(self) -> None:
        """Register the pseudo-label file and extend the training stream with it.

        With PSEUDO_TRAINING.ENABLED, a pseudo-labelled loader is attached to the labelled stream,
        which goes on unchanged (ImageScoreTrainer.build_pseudo_loader); otherwise the
        pseudo-labelled dataset joins DATASETS.TRAIN in one new labelled loader. A file without
        images (no detection reached PSEUDO_SCORE_THRESH) cannot join Detectron2's loader, which
        refuses empty datasets; training then reads the labelled set alone.
        """
        name = self.cfg.IMAGESCORE.PSEUDO_DATASET_NAME
        count = register_pseudo_labels(
            name, self.json_file, labelled_class_names(self.cfg), labelled_category_ids(self.cfg)
        )
        if count == 0:
            logger.warning(
                "%s holds no pseudo-labelled image (no detection reached IMAGESCORE.PSEUDO_SCORE_THRESH=%g)",
                self.json_file,
                self.cfg.IMAGESCORE.PSEUDO_SCORE_THRESH,
            )
        trainer, settings = self.trainer, self.cfg.IMAGESCORE.PSEUDO_TRAINING
        if settings.ENABLED:
            trainer.data_loader.attach_pseudo(
                trainer.build_pseudo_loader(self.cfg, name) if count else None
            )
            how = "zipped, PSEUDO_RATIO %g" % settings.PSEUDO_RATIO
        else:
            train_cfg = self.cfg.clone()
            train_cfg.defrost()
            train_cfg.DATASETS.TRAIN = tuple(self.cfg.DATASETS.TRAIN) + ((name,) if count else ())
            trainer.data_loader.replace_labelled(trainer.build_train_loader(train_cfg).labelled)
            how = "appended to DATASETS.TRAIN"
        logger.info(
            "Swapped the training loader at iteration %d: it now reads %s (%d pseudo-labelled images, %s)",
            self.swap_iter,
            " + ".join(list(self.cfg.DATASETS.TRAIN) + ([name] if count else [])),
            count,
            how,
        )

    def state_dict(self):
        """The swap's iteration and its file relative to OUTPUT_DIR: a resumed run reads its own folder."""
        return {
            "swap_iter": self.swap_iter,
            "pseudo_labels": os.path.relpath(self.json_file, self.cfg.OUTPUT_DIR),
        }

    def load_state_dict(self, state_dict):
        self.swap_iter = int(state_dict["swap_iter"])
        recorded = state_dict.get("pseudo_labels", state_dict.get("json_file", ""))
        here = os.path.abspath(os.path.join(self.cfg.OUTPUT_DIR, recorded))
        if recorded and here != os.path.abspath(self.json_file):
            logger.warning(
                "The checkpoint's swap wrote %s; this run reads its own %s (IMAGESCORE.PSEUDO_LABEL_FILE in OUTPUT_DIR)",
                recorded,
                self.json_file,
            )
