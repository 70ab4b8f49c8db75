"""Choose the best-scoring images: a top fraction overall, or a fraction per predicted class.

Pure NumPy. Ties are broken by image id (ascending) so that repeated runs select the same images.
"""

import math
from fractions import Fraction
from typing import Dict, Mapping, Sequence, Union

import numpy as np

__all__ = ["count_to_keep", "rank_by_score", "select_top_fraction", "select_per_class"]


def count_to_keep(fraction: float, num_candidates: int) -> int:
    """ceil(fraction x num_candidates), computed on the decimal value of ``fraction``.

    Ceil, so that a non-zero fraction of a non-empty set keeps at least one image; the
    decimal value, so that 0.3 x 10 keeps 3 (binary floating point would make it 3.0000000000000004).
    """
    if not 0.0 <= float(fraction) <= 1.0:
        raise ValueError("fraction must lie in [0, 1], got %r" % (fraction,))
    exact = Fraction(repr(float(fraction))) * int(num_candidates)
    return int(math.ceil(exact))


def rank_by_score(scores: Sequence[float], image_ids: Sequence) -> np.ndarray:
    """Indices ordering images from best (highest score) to worst; equal scores by ascending id."""
    scores = np.asarray(scores, dtype=np.float64)
    ids = np.asarray(image_ids)
    if scores.ndim != 1 or len(scores) != len(ids):
        raise ValueError(
            "scores and image_ids must be 1-D and of one length, got %d and %d"
            % (scores.size, ids.size)
        )
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN (image %r)" % (ids[np.isnan(scores)][0],))
    if len(np.unique(ids)) != len(ids):
        raise ValueError("image_ids must be unique")
    return np.lexsort((ids, -scores))


def select_top_fraction(
    scores: Sequence[float], image_ids: Sequence, fraction: float
) -> np.ndarray:
    """Indices of the ``count_to_keep(fraction, N)`` best images, best first."""
    order = rank_by_score(scores, image_ids)
    return order[: count_to_keep(fraction, len(order))]


def select_per_class(
    scores: Sequence[float],
    predicted_labels: Sequence[int],
    alphas: Union[Sequence[float], Mapping[int, float]],
    image_ids: Sequence,
) -> Dict[int, np.ndarray]:
    """Per class c, indices of the best ``count_to_keep(alpha_c, |candidates_c|)`` images predicted as c.

    The candidates of class c are the images the model predicts as c (docs/method.md §3); ``alphas`` is
    indexed by class. Returns ``{class: indices into scores, best first}``.
    """
    labels = np.asarray(predicted_labels)
    ids = np.asarray(image_ids)
    scores = np.asarray(scores, dtype=np.float64)
    if len(labels) != len(scores):
        raise ValueError("got %d predicted labels for %d scores" % (len(labels), len(scores)))
    alpha_of = dict(alphas) if isinstance(alphas, Mapping) else dict(enumerate(alphas))
    unknown = sorted(set(labels.tolist()) - set(alpha_of))
    if unknown:
        raise ValueError("no alpha given for predicted class %r" % unknown[0])
    selected = {}
    for cls in sorted(alpha_of):
        candidates = np.flatnonzero(labels == cls)
        chosen = select_top_fraction(scores[candidates], ids[candidates], alpha_of[cls])
        selected[cls] = candidates[chosen]
    return selected
