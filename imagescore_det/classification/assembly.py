"""Model assembly: combine models each boosted for one class (docs/method.md §3).

Model k was trained with image-score selection for class k only. It *claims* a test image when
it predicts class k for it. An image claimed by several models takes the class of the claimant
whose image score (against its own class-k reference) is highest; an image claimed by none keeps
the base model's prediction.
"""

from typing import Optional, Sequence

import numpy as np

__all__ = ["assemble_predictions"]


def assemble_predictions(
    predictions,
    scores,
    base_predictions,
    *,
    boosted_classes: Optional[Sequence[int]] = None,
) -> np.ndarray:
    """Assembled labels, int64 [N].

    Args:
        predictions: int [K, N], model k's predicted class for each image.
        scores: float [K, N], model k's image score of each image (higher is better; finite where
            model k claims the image, unused elsewhere).
        base_predictions: int [N], the base model's predictions, used for unclaimed images.
        boosted_classes: the class model k is boosted for; defaults to k.

    Equal scores among claimants go to the model listed first.
    """
    predictions = np.asarray(predictions)
    scores = np.asarray(scores, dtype=np.float64)
    base = np.asarray(base_predictions, dtype=np.int64)
    if (
        predictions.ndim != 2
        or predictions.shape != scores.shape
        or predictions.shape[1:] != base.shape
    ):
        raise ValueError(
            "predictions %s and scores %s must be [models, images] and match base_predictions %s"
            % (predictions.shape, scores.shape, base.shape)
        )
    classes = (
        np.arange(len(predictions))
        if boosted_classes is None
        else np.asarray(boosted_classes, dtype=np.int64)
    )
    if classes.shape != (len(predictions),):
        raise ValueError(
            "boosted_classes must name one class per model (%d), got %r"
            % (len(predictions), boosted_classes)
        )
    claimed = predictions == classes[:, None]
    if not np.isfinite(scores[claimed]).all():
        bad = np.argwhere(claimed & ~np.isfinite(scores))[0]
        raise ValueError(
            "scores of claimed images must be finite (model %d, image %d)" % (bad[0], bad[1])
        )
    claim_scores = np.where(claimed, scores, -np.inf)
    winner = claim_scores.argmax(axis=0)  # first maximum on ties
    return np.where(claimed.any(axis=0), classes[winner], base)
