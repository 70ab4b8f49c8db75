"""Numbers the reports show: accuracy per image-score interval and AUROC. NumPy and scikit-learn."""

from typing import Tuple

import numpy as np
from sklearn.metrics import roc_auc_score

__all__ = ["score_interval_edges", "accuracy_by_interval", "failure_auroc"]


def score_interval_edges(scores, bins: int) -> np.ndarray:
    """``bins`` equal-width intervals from the lowest to the highest score (the paper's histogram axis)."""
    scores = np.asarray(scores, dtype=np.float64)
    low, high = float(scores.min()), float(scores.max())
    if low == high:
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, bins + 1)


def accuracy_by_interval(scores, correct, edges) -> Tuple[np.ndarray, np.ndarray]:
    """(accuracy, count) per interval ``[edges[i], edges[i+1])``, the last interval closed.

    Scores outside the edges are counted in the nearest end interval; accuracy is NaN where empty.
    """
    scores, correct = np.asarray(scores, dtype=np.float64), np.asarray(correct, dtype=bool)
    index = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, len(edges) - 2)
    counts = np.bincount(index, minlength=len(edges) - 1)
    hits = np.bincount(index, weights=correct.astype(np.float64), minlength=len(edges) - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)
    return accuracy, counts


def failure_auroc(correct, ranking) -> float:
    """AUROC with which ``ranking`` (higher = more trusted) puts correct predictions above wrong ones.

    0.5 is chance, 1.0 perfect separation; NaN when every prediction is right (or every one wrong).
    """
    correct = np.asarray(correct, dtype=bool)
    if correct.all() or not correct.any():
        return float("nan")
    return float(roc_auc_score(correct, np.asarray(ranking, dtype=np.float64)))
