"""What a scoring pass knows about one unlabelled image: pure Python, no Detectron2.

Every signal a selection can rank by has a field of its own, and none is overwritten by another:
the image score (image mode), the box scores (box mode), the detections' confidences, and the
``ranking_value`` that the configured mode derives from them and that selection sorts by.
"""

import dataclasses
import math
from typing import Any, Dict, List

__all__ = ["ScoredImage"]


@dataclasses.dataclass
class ScoredImage:
    """One image after the scoring pass: its scores and the model's detections on it.

    ``boxes`` (XYXY in original-image pixels), ``classes`` (contiguous ids) and ``confidences``
    are the pseudo labels: detections with confidence >= the pseudo-label threshold.
    ``mean_confidence`` is the mean confidence of *all* the model's test-time detections (0 when it
    has none), the softmax baseline's per-image value. ``ignore_boxes`` (XYXY) are the less
    confident detections kept as regions that training on pseudo labels neither rewards nor punishes.

    ``image_score`` and its per-layer ``terms`` come from image mode (NaN where it did not run),
    ``box_scores`` (one per pseudo label) from box mode. ``ranking_value`` is what the
    ``image_score`` selection ranks by: the image score in image mode, the aggregate box value in
    box mode (:mod:`imagescore_det.detection.ranking`). ``error`` is non-empty for an image that
    could not be read: it was not scored, is never selected, and its CSV row says why. ``kind`` is
    the dataset dict's ``"kind"`` ("clean" or a distractor's kind, in a synthetic uncurated pool;
    "" for a set without kinds).
    """

    image_id: Any
    file_name: str
    height: int
    width: int
    boxes: List[List[float]]
    classes: List[int]
    confidences: List[float]
    mean_confidence: float = 0.0
    ignore_boxes: List[List[float]] = dataclasses.field(default_factory=list)
    image_score: float = math.nan
    terms: Dict[str, float] = dataclasses.field(default_factory=dict)
    box_scores: List[float] = dataclasses.field(default_factory=list)
    ranking_value: float = math.nan
    error: str = ""
    kind: str = ""

    @classmethod
    def unreadable(cls, image_id: Any, file_name: str, reason: str) -> "ScoredImage":
        return cls(image_id, file_name, 0, 0, [], [], [], error=reason)
