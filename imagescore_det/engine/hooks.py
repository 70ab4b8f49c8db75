"""The swap hook: at ``IMAGESCORE.SWAP_ITER`` score the unlabelled set, write pseudo labels and
train on labelled + pseudo-labelled images from then on (docs/method.md §2 step 7).

The hook only orchestrates; the work is in :mod:`.scoring` and :mod:`.selection`. Its state (when
the last swap happened and which file it wrote) travels in Detectron2's checkpoints, so a run
resumed after the swap registers that file again and swaps its loader without scoring.
"""
import logging
from typing import Callable, Dict, Optional

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.engine import HookBase  # noqa: E402
from detectron2.evaluation.testing import flatten_results_dict  # noqa: E402
from detectron2.utils import comm  # noqa: E402

from ..data.pseudo_labels import register_pseudo_labels  # noqa: E402
from .scoring import score_unlabelled  # noqa: E402
from .selection import labelled_category_ids, labelled_class_names, output_paths, selection_seed, write_selection  # noqa: E402

__all__ = ["PseudoLabelSwapHook"]

logger = logging.getLogger(__name__)


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
        self.cfg = cfg.clone()
        self._evaluate = evaluate
        self.scoring_runs = 0
        self.swap_iter = -1
        self.json_file = ""
        self.evaluations: Dict[int, Dict] = {}
        self._labelled_stream = None

    def is_due(self, iterations_done: int) -> bool:
        """Whether a scoring pass belongs after ``iterations_done`` iterations."""
        first, period = self.cfg.IMAGESCORE.SWAP_ITER, self.cfg.IMAGESCORE.UPDATE_PERIOD
        if iterations_done == first:
            return True
        return period > 0 and iterations_done > first and (iterations_done - first) % period == 0

    def before_train(self):
        done = self.trainer.iter  # the start iteration: iterations already done
        if self.swap_iter >= 0:
            logger.info(
                "Resuming after the swap at iteration %d: reloading pseudo labels from %s without scoring again",
                self.swap_iter, self.json_file,
            )
            self._swap_loader()
        elif done >= self.cfg.IMAGESCORE.SWAP_ITER:
            logger.info("Starting at iteration %d, past IMAGESCORE.SWAP_ITER with no swap recorded: swapping now", done)
            self._score_and_swap(done)

    def after_step(self):
        done = self.trainer.iter + 1
        if self.is_due(done) and done < self.trainer.max_iter:
            self._score_and_swap(done)

    def _score_and_swap(self, done: int) -> None:
        if self._evaluate is not None:
            self.evaluations[done] = self._evaluate()
            flat = flatten_results_dict(self.evaluations[done] or {})
            logger.info("Evaluation before the swap at iteration %d: %s", done, ", ".join("%s=%.2f" % kv for kv in flat.items()))
        description = "%s at iteration %d" % (self.cfg.MODEL.META_ARCHITECTURE, done)
        reference, images = score_unlabelled(self.cfg, self.trainer.model, description=description)
        self.scoring_runs += 1
        if comm.is_main_process():
            model_info = {"iteration": done, "output_dir": self.cfg.OUTPUT_DIR, "weights": self.cfg.MODEL.WEIGHTS}
            write_selection(self.cfg, reference, images, model_info=model_info)
        comm.synchronize()
        self.swap_iter = done
        self.json_file = output_paths(self.cfg)["pseudo_labels"]
        self._swap_loader()

    def _swap_loader(self) -> None:
        """Register the pseudo-label file and rebuild the training loader over labelled + pseudo labels.

        With PSEUDO_TRAINING.ENABLED, the labelled loader's iterator goes on unchanged and a
        pseudo-labelled loader is zipped with it (ImageScoreTrainer.build_train_loader); otherwise the
        pseudo-labelled dataset joins DATASETS.TRAIN in one new loader. A file without images (no
        detection reached PSEUDO_SCORE_THRESH) cannot join Detectron2's loader, which refuses empty
        datasets; training then reads the labelled set alone.
        """
        name = self.cfg.IMAGESCORE.PSEUDO_DATASET_NAME
        count = register_pseudo_labels(name, self.json_file, labelled_class_names(self.cfg), labelled_category_ids(self.cfg))
        if count == 0:
            logger.warning(
                "%s holds no pseudo-labelled image (no detection reached IMAGESCORE.PSEUDO_SCORE_THRESH=%g)",
                self.json_file, self.cfg.IMAGESCORE.PSEUDO_SCORE_THRESH,
            )
        trainer, settings = self.trainer, self.cfg.IMAGESCORE.PSEUDO_TRAINING
        if settings.ENABLED:
            if self._labelled_stream is None:  # the first swap in this process: continue the labelled stream
                self._labelled_stream = trainer._trainer._data_loader_iter
            labelled, pseudo = self._labelled_stream, (name if count else "")
            trainer._trainer.reset_data_loader(lambda: trainer.build_train_loader(self.cfg, pseudo, labelled))
            how = "zipped, PSEUDO_RATIO %g" % settings.PSEUDO_RATIO
        else:
            train_cfg = self.cfg.clone()
            train_cfg.defrost()
            train_cfg.DATASETS.TRAIN = tuple(self.cfg.DATASETS.TRAIN) + ((name,) if count else ())
            trainer._trainer.reset_data_loader(lambda: trainer.build_train_loader(train_cfg))
            how = "appended to DATASETS.TRAIN"
        logger.info(
            "Swapped the training loader at iteration %d: it now reads %s (%d pseudo-labelled images, %s)",
            self.swap_iter, " + ".join(list(self.cfg.DATASETS.TRAIN) + ([name] if count else [])), count, how,
        )

    def state_dict(self):
        return {"swap_iter": self.swap_iter, "json_file": self.json_file}

    def load_state_dict(self, state_dict):
        self.swap_iter = int(state_dict["swap_iter"])
        self.json_file = str(state_dict["json_file"])
