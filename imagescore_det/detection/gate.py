"""The image-score gate on the mean teacher's online pseudo labels (``IMAGESCORE.MEAN_TEACHER.GATE``).

A scoring mode of :mod:`.modes` (``image`` or ``box``) builds its reference from the teacher on the
labelled set (:func:`.modes.build_references`: the one reference pass, one merge across processes),
then scores the labelled set itself against it, its images or its ground-truth boxes, to fix the
threshold: the ``GATE_QUANTILE`` quantile of those scores (per class in box mode, whose references
are per class). The teacher's labelling forward carries the mode's recorder, so the pseudo labels
are scored on the forward that made them (``gate.scorer.score``), and :meth:`ScoreGate.keep` drops
what falls below the threshold.
"""

import logging
import math
from typing import List, Optional

import numpy as np

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.utils import comm  # noqa: E402

from ..data.ground_truth import ground_truth_of  # noqa: E402
from ..scoring import ClassReferences, Reference  # noqa: E402
from ..structures import ScoredImage  # noqa: E402
from .modes import MODES, build_references, score_truth_boxes  # noqa: E402
from .passes import labelled_loader, run_recorded  # noqa: E402
from .ranking import keep_boxes  # noqa: E402

__all__ = ["GATES", "ScoreGate"]

logger = logging.getLogger(__name__)

#: The values of IMAGESCORE.MEAN_TEACHER.GATE ("none": no gate, the teacher's confidence alone).
GATES = ("none", "image", "box")
#: What each gated mode's reference is, to read it back from a checkpoint.
REFERENCE_TYPES = {"image": Reference, "box": ClassReferences}


class ScoreGate:
    """The gate of one scoring mode on ``model`` (the teacher), with its reference and thresholds.

    Attributes:
        scorer: the mode (:data:`.modes.MODES`); its ``recorder`` goes on the labelling forward.
        reference: the mode's reference (None until :meth:`rebuild`).
        thresholds: image mode ``[threshold]``; box mode one per class (``inf`` for a class without
            labelled boxes: its detections cannot be judged and are dropped).
        built_at: the iteration of the last rebuild (-1: never).
    """

    def __init__(self, cfg, model):
        self.cfg, self.model = cfg, model
        self.mode = cfg.IMAGESCORE.MEAN_TEACHER.GATE
        if self.mode not in REFERENCE_TYPES:
            raise ValueError(
                "IMAGESCORE.MEAN_TEACHER.GATE is %r; a gate scores in one of %s"
                % (self.mode, sorted(REFERENCE_TYPES))
            )
        self.quantile = float(cfg.IMAGESCORE.MEAN_TEACHER.GATE_QUANTILE)
        # Built now, so that a backbone or box head that cannot record fails before iteration 0.
        self.scorer = MODES[self.mode](cfg, model, "")
        self.truth = (
            ground_truth_of(cfg.IMAGESCORE.LABELLED_DATASETS) if self.mode == "box" else None
        )
        self.reference = None
        self.thresholds: List[float] = []
        self.built_at = -1

    def rebuild(self, iteration: int) -> None:
        """The reference and thresholds of ``model`` as it is now (every process gets the same)."""
        self.scorer = MODES[self.mode](
            self.cfg, self.model, "mean teacher at iteration %d" % iteration
        )
        self.reference = build_references(
            self.model, labelled_loader(self.cfg), [self.scorer], truth=self.truth
        )[self.mode]
        if self.mode == "image":
            scores = np.asarray([image.image_score for image in self.labelled_scores()])
            self.thresholds = [float(np.quantile(scores, self.quantile))]
        else:
            scores, classes = score_truth_boxes(
                self.model, labelled_loader(self.cfg), self.scorer, self.reference, truth=self.truth
            )
            self.thresholds = [
                float(np.quantile(scores[classes == c], self.quantile))
                if (classes == c).any()
                else math.inf
                for c in range(len(self.scorer.class_names))
            ]
        self.built_at = iteration
        logger.info(
            "Gate (%s mode) rebuilt from the teacher at iteration %d: threshold(s) %s, the %g quantile of "
            "the labelled set's %d %s",
            self.mode,
            iteration,
            ", ".join("%.4g" % t for t in self.thresholds),
            self.quantile,
            len(scores),
            "ground-truth box scores" if self.mode == "box" else "image scores",
        )

    def labelled_scores(self) -> List[ScoredImage]:
        """The labelled images scored against the image reference, gathered from every process
        (box mode calibrates on :func:`.modes.score_truth_boxes` instead)."""
        scored: List[ScoredImage] = []

        def score(inputs, outputs):
            images = [
                ScoredImage(
                    r["image_id"], r["file_name"], int(r["height"]), int(r["width"]), [], [], []
                )
                for r in inputs
            ]
            self.scorer.score(self.reference, inputs, images)
            scored.extend(images)

        run_recorded(
            self.model,
            labelled_loader(self.cfg),
            [self.scorer.recorder],
            score,
            description="Gate threshold pass",
        )
        return [image for part in comm.all_gather(scored) for image in part]

    def keep(self, image: ScoredImage) -> Optional[ScoredImage]:
        """``image`` with the pseudo boxes that clear their threshold, or None where the gate drops it:
        image mode, its image score is below the threshold; box mode, every one of its boxes is."""
        if self.mode == "image":
            return image if image.image_score >= self.thresholds[0] else None
        passed = [score >= self.thresholds[c] for c, score in zip(image.classes, image.box_scores)]
        if image.boxes and not any(passed):
            return None
        return keep_boxes(image, passed, ignore_rest=False)

    def state_dict(self) -> dict:
        if self.reference is None:
            return {}
        return {
            "mode": self.mode,
            "built_at": self.built_at,
            "reference": self.reference.state_dict(),
            "thresholds": list(self.thresholds),
        }

    def load_state_dict(self, state: dict) -> None:
        """A checkpoint's gate; one of another mode (or none) is ignored, so the next step rebuilds."""
        if state.get("mode") != self.mode:
            logger.warning(
                "The checkpoint holds no %s gate (it has %r): rebuilding the references from the teacher",
                self.mode,
                state.get("mode"),
            )
            return
        source = "the checkpoint's %s gate" % self.mode
        self.reference = REFERENCE_TYPES[self.mode].from_state_dict(state["reference"], source)
        self.thresholds = [float(t) for t in state["thresholds"]]
        self.built_at = int(state["built_at"])
