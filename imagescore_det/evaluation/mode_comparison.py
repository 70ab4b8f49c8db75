"""Image mode vs box mode vs confidence, measured against ground truth (issue 10).

One scoring pass in both modes (``score_unlabelled(..., modes=("image", "box"))``) gives every image
its image score and its box scores on the same detections, so every strategy below keeps the same
fraction of the same pseudo-labelled images and differs only in which: image score (the paper), box score
(min or mean over an image's pseudo boxes), mean detection confidence, the score x confidence
rank product (min or mean), a seeded random draw, and "all". A second table asks the question box
by box: with which AUROC does each signal put correct pseudo boxes (same class, IoU >= 0.5) above
wrong ones. :func:`mean_and_sd` summarises either table over several teachers.
"""

import math
from typing import Dict, List, Mapping, Sequence

import numpy as np

from ..classification.metrics import failure_auroc
from ..data.ground_truth import GroundTruth
from ..detection.ranking import image_values, rank_product
from ..detection.selection import select_by_strategy
from ..scoring import select_top_fraction
from ..structures import ScoredImage
from .pseudo_label_quality import match_pseudo_labels, selection_quality

__all__ = [
    "BOX_STRATEGIES",
    "BOX_SIGNALS",
    "compare_modes",
    "box_auroc",
    "mean_and_sd",
    "markdown_table",
]

BOX_STRATEGIES = (
    "image_score",
    "box_score_min",
    "box_score_mean",
    "confidence",
    "score_x_confidence_min",
    "score_x_confidence_mean",
    "random",
)
#: Per-box signals, each higher = more trusted.
BOX_SIGNALS = ("box_score", "confidence", "score_x_confidence")


def _strategy_values(images: Sequence[ScoredImage], strategy: str) -> np.ndarray:
    if strategy == "image_score":
        return np.asarray([image.image_score for image in images], dtype=np.float64)
    signal, how = strategy.rsplit("_", 1)
    per_image = (
        [image.box_scores for image in images] if signal == "box_score" else rank_product(images)
    )
    return image_values(per_image, how, empty=-math.inf)  # no pseudo box: last


def compare_modes(
    images: Sequence[ScoredImage], truth: GroundTruth, fraction: float, *, seed: int = 0
) -> List[Dict[str, object]]:
    """One row per :data:`BOX_STRATEGIES` entry, then "all", over images scored in both modes."""
    if any(
        len(image.box_scores) != len(image.boxes) or math.isnan(image.image_score)
        for image in images
    ):
        raise ValueError(
            "compare_modes needs images scored in both modes: score_unlabelled(..., modes=('image', 'box'))"
        )
    ids = [image.image_id for image in images]
    rows = []
    for strategy in BOX_STRATEGIES:
        if strategy in ("confidence", "random"):
            indices = select_by_strategy(images, strategy, fraction, seed=seed)
        else:
            indices = select_top_fraction(_strategy_values(images, strategy), ids, fraction)
        rows.append({"strategy": strategy, **selection_quality(images, truth, indices)})
    rows.append({"strategy": "all", **selection_quality(images, truth, np.arange(len(images)))})
    return rows


def box_auroc(images: Sequence[ScoredImage], truth: GroundTruth) -> List[Dict[str, object]]:
    """Per signal, the AUROC with which it ranks correct pseudo boxes above wrong ones (NaN if all agree)."""
    matches = [
        match_pseudo_labels(image.boxes, image.classes, image.confidences, *truth[image.image_id])
        for image in images
    ]
    correct = np.concatenate(matches or [np.empty(0, bool)])
    values = {
        "box_score": [s for image in images for s in image.box_scores],
        "confidence": [s for image in images for s in image.confidences],
        "score_x_confidence": [s for part in rank_product(images) for s in part],
    }
    return [
        {
            "signal": signal,
            "boxes": len(correct),
            "correct": int(correct.sum()),
            "auroc": failure_auroc(correct, values[signal]) if len(correct) else math.nan,
        }
        for signal in BOX_SIGNALS
    ]


def mean_and_sd(
    tables: Sequence[Sequence[Mapping[str, object]]], key: str
) -> List[Dict[str, object]]:
    """Rows of ``tables`` (one table per teacher) matched by ``key``: mean and sample sd of each numeric column.

    NaN entries (an undefined ratio in one teacher) are left out of that cell; ``n`` counts teachers.
    """
    rows = []
    for position, first in enumerate(tables[0]):
        matched = [table[position] for table in tables]
        if any(row[key] != first[key] for row in matched):
            raise ValueError("the teachers' tables list different rows at position %d" % position)
        summary: Dict[str, object] = {key: first[key], "n": len(matched)}
        for column, value in first.items():
            if column == key or not isinstance(value, (int, float)):
                continue
            numbers = np.asarray([row[column] for row in matched], dtype=np.float64)
            numbers = numbers[~np.isnan(numbers)]
            summary[column + "_mean"] = float(numbers.mean()) if len(numbers) else math.nan
            summary[column + "_sd"] = float(numbers.std(ddof=1)) if len(numbers) > 1 else math.nan
        rows.append(summary)
    return rows


def markdown_table(rows: Sequence[Mapping[str, object]]) -> str:
    """A Markdown table of dict rows (columns of the first row; floats to 3 decimals)."""
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append(
            "| "
            + " | ".join(
                "%.3f" % row[c] if isinstance(row[c], float) else str(row[c]) for c in columns
            )
            + " |"
        )
    return "\n".join(lines)
