"""From box scores to image rankings in box mode: aggregation, the score x confidence combination,
and the box filter.

Pure NumPy over :class:`ScoredImage` records. An image's value aggregates the values of its pseudo
boxes ("min": its least typical box; "mean"); an image without pseudo boxes gets ``empty``, which
the caller picks below every real value, so it ranks last.

The combination ranks every pseudo box of the scored set twice, by box score and by confidence,
and multiplies the two rank fractions (rank / number of boxes, ties sharing their average rank):
a box stays high only if both signals rank it high. Ranks make the two scales comparable without
fitting anything, so the combination needs no labelled detections and no extra setting.

The box filter (IMAGESCORE.SELECTION "box_filter") keeps a pseudo box only where its box score is at
least a quantile of the labelled set's own ground-truth box scores: a box as typical of its class as
most real objects of the labelled set. A box that fails becomes an ignore box, neither object nor
background, so a doubtful detection is not taught as background either.
"""

import dataclasses
import itertools
from typing import List, Sequence

import numpy as np
from scipy.stats import rankdata

from ..structures import ScoredImage

__all__ = [
    "BOX_AGGREGATES",
    "BOX_RANKINGS",
    "aggregate",
    "image_values",
    "rank_product",
    "box_ranking_values",
    "box_filter_threshold",
    "filter_boxes",
]

#: How an image's box values become its value.
BOX_AGGREGATES = ("min", "mean")
#: What box mode ranks by: the box score alone, or its rank product with the detection confidence.
BOX_RANKINGS = ("score", "score_x_confidence")


def aggregate(values: Sequence[float], how: str, *, empty: float) -> float:
    """``min`` or ``mean`` of ``values``; ``empty`` when there are none."""
    if how not in BOX_AGGREGATES:
        raise ValueError(
            "IMAGESCORE.BOX.AGGREGATE must be one of %s, got %r" % (BOX_AGGREGATES, how)
        )
    if len(values) == 0:
        return float(empty)
    return float(np.min(values)) if how == "min" else float(np.mean(values))


def rank_product(images: Sequence[ScoredImage]) -> List[np.ndarray]:
    """Per image, each pseudo box's (box-score rank fraction) x (confidence rank fraction), in (0, 1].

    Higher is better; the ranks are taken over every pseudo box of ``images``.
    """
    for image in images:
        if len(image.box_scores) != len(image.confidences):
            raise ValueError(
                "image %r has %d box scores for %d pseudo labels: score it in box mode"
                % (image.image_id, len(image.box_scores), len(image.confidences))
            )
    counts = [len(image.confidences) for image in images]
    total = sum(counts)
    if total == 0:
        return [np.empty(0) for _ in images]
    box_scores = np.concatenate(
        [np.asarray(image.box_scores, dtype=np.float64) for image in images]
    )
    confidences = np.concatenate(
        [np.asarray(image.confidences, dtype=np.float64) for image in images]
    )
    combined = rankdata(box_scores) / total * rankdata(confidences) / total
    return np.split(combined, np.cumsum(counts)[:-1])


def image_values(per_image: Sequence[Sequence[float]], how: str, *, empty: float) -> np.ndarray:
    """One value per image: :func:`aggregate` of its box values."""
    return np.asarray(
        [aggregate(values, how, empty=empty) for values in per_image], dtype=np.float64
    )


def box_ranking_values(
    images: Sequence[ScoredImage], ranking: str, how: str, *, empty_score: float
) -> np.ndarray:
    """The values box mode ranks ``images`` by (higher is better).

    "score": the aggregate box score (``empty_score`` without pseudo boxes: pass one below any real
    score); "score_x_confidence": the aggregate rank product (0 without pseudo boxes).
    """
    if ranking == "score":
        return image_values([image.box_scores for image in images], how, empty=empty_score)
    if ranking == "score_x_confidence":
        return image_values(rank_product(images), how, empty=0.0)
    raise ValueError("IMAGESCORE.BOX.RANKING must be one of %s, got %r" % (BOX_RANKINGS, ranking))


def box_filter_threshold(truth_scores: Sequence[float], quantile: float) -> float:
    """The ``quantile`` (NumPy's linear interpolation) of the labelled set's ground-truth box scores."""
    scores = np.asarray(truth_scores, dtype=np.float64)
    if scores.size == 0:
        raise ValueError(
            "the box filter needs the labelled set's ground-truth box scores, and there are none"
        )
    if not 0.0 <= quantile <= 1.0:
        raise ValueError("IMAGESCORE.BOX.FILTER_QUANTILE is %r; it must lie in [0, 1]" % quantile)
    return float(np.quantile(scores, quantile))


#: The per-box fields of a ScoredImage, one value per pseudo box.
BOX_FIELDS = ("boxes", "classes", "confidences", "box_scores")


def keep_boxes(image: ScoredImage, passed: Sequence[bool], *, ignore_rest: bool) -> ScoredImage:
    """A copy of ``image`` with the pseudo boxes where ``passed`` holds (their classes, confidences
    and box scores with them); the others become ignore boxes (neither object nor background) with
    ``ignore_rest``, else they are dropped. The one per-box filter of the box filter and the gate."""
    if not len(passed) == len(image.boxes) == len(image.box_scores):
        raise ValueError(
            "image %r has %d box scores and %d pass flags for %d pseudo labels: score it in box mode"
            % (image.image_id, len(image.box_scores), len(passed), len(image.boxes))
        )
    kept = {key: list(itertools.compress(getattr(image, key), passed)) for key in BOX_FIELDS}
    if ignore_rest:
        failed = [not flag for flag in passed]
        kept["ignore_boxes"] = list(image.ignore_boxes) + list(
            itertools.compress(image.boxes, failed)
        )
    return dataclasses.replace(image, **kept)


def filter_boxes(images: Sequence[ScoredImage], threshold: float) -> List[ScoredImage]:
    """Copies of ``images`` that keep the pseudo boxes whose box score is >= ``threshold``; the others
    are appended to the image's ignore boxes (:func:`keep_boxes`)."""
    return [
        keep_boxes(image, [score >= threshold for score in image.box_scores], ignore_rest=True)
        for image in images
    ]
