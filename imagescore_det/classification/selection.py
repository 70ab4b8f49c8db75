"""Which additional images join training this epoch, and with which label (docs/method.md §3).

Both selection modes use the scoring core's :func:`select_per_class`: the candidates of class c
are the additional images the model predicts as c, and ``ceil(alpha_c x |candidates_c|)`` of them
are added (ceil on the decimal value: 0.3 x 10 adds 3) with label c. Only the ranking differs:
image score against class c's reference, or max softmax probability (the baseline).
"""

from typing import Dict, Sequence

import numpy as np

from ..scoring import select_per_class
from .inference import Predictions

__all__ = ["SELECTION_MODES", "select_additional", "boost_alphas"]

#: "none" adds nothing (the plain baseline), "softmax" ranks by max probability, "imagescore" by image score.
SELECTION_MODES = ("none", "softmax", "imagescore")


def select_additional(
    mode: str, predictions: Predictions, alphas: Sequence[float], image_ids: Sequence
) -> Dict[int, np.ndarray]:
    """``{class c: indices of the chosen images predicted as c, best first}``; their label is c.

    Ties are broken by ascending image id, so a fixed model and fixed data give fixed indices.
    Classes with alpha 0 are not ranked, so their images' ranking values may be NaN.
    """
    if mode not in SELECTION_MODES:
        raise ValueError("selection mode must be one of %s, got %r" % (SELECTION_MODES, mode))
    if mode == "none":
        return {c: np.empty(0, dtype=np.int64) for c in range(len(alphas))}
    ranking = predictions.scores if mode == "imagescore" else predictions.confidence
    # Classes with alpha 0 add nothing and need no ranking (a boosted model scores its class only).
    active = {c: float(a) for c, a in enumerate(alphas) if a > 0}
    rows = np.flatnonzero(np.isin(predictions.labels, list(active)))
    chosen = select_per_class(
        ranking[rows], predictions.labels[rows], active, np.asarray(image_ids)[rows]
    )
    return {
        c: rows[chosen[c]] if c in chosen else np.empty(0, dtype=np.int64)
        for c in range(len(alphas))
    }


def boost_alphas(alphas: Sequence[float], boosted_class: int) -> list:
    """The alphas of the model boosted for one class (model assembly): alpha_k for class k, 0 elsewhere."""
    if not 0 <= boosted_class < len(alphas):
        raise ValueError(
            "boosted class %d is not one of the %d classes" % (boosted_class, len(alphas))
        )
    return [float(a) if c == boosted_class else 0.0 for c, a in enumerate(alphas)]
