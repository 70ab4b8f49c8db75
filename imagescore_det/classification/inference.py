"""Per-class references and predictions with image scores, streamed batch by batch (docs/method.md §1, §3).

Class c's reference is built from the labelled images whose true label is c; an image is scored
against the reference of the class the model predicts for it (at test time no label is known).
Both run in eval mode under ``torch.inference_mode`` and leave the model in eval mode.
"""

from dataclasses import dataclass
from typing import Dict, Iterator, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..scoring import ActivationRecorder, Reference, ReferenceBuilder, constants
from .data import ImageSet

__all__ = ["Predictions", "build_class_references", "predict_and_score"]


@dataclass
class Predictions:
    """Per image: predicted class, max softmax probability, image score against that class's reference.

    Higher is better for both ``confidence`` (range [1/K, 1]) and ``scores`` (range (-inf, 0] with
    formula "overlap"; "count" can exceed 0).
    """

    labels: np.ndarray
    confidence: np.ndarray
    scores: np.ndarray


def _recorded_batches(
    model: nn.Module,
    layers: Sequence[str],
    images: torch.Tensor,
    batch_size: int,
    device: torch.device,
) -> Iterator[Tuple[slice, torch.Tensor, Dict[str, torch.Tensor]]]:
    """Yield (rows, logits, activations) for consecutive batches, with hooks attached only meanwhile."""
    model.eval()
    recorder = ActivationRecorder(model, layers, grid=0)
    for start in range(0, len(images), batch_size):
        rows = slice(start, start + batch_size)
        with torch.inference_mode(), recorder:
            logits = model(images[rows].to(device))
        yield rows, logits.float().cpu(), recorder.pop()


def _rows(acts: Dict[str, torch.Tensor], mask: np.ndarray) -> Dict[str, torch.Tensor]:
    """The activations of the images where ``mask`` is true."""
    keep = torch.from_numpy(mask)
    return {name: act[keep.to(act.device)] for name, act in acts.items()}


def build_class_references(
    model: nn.Module,
    layers: Sequence[str],
    labelled: ImageSet,
    num_classes: int,
    *,
    batch_size: int,
    device: torch.device,
    threshold_ratio: float = constants.THRESHOLD_RATIO,
    threshold_stat: str = constants.THRESHOLD_STAT,
    classes: Optional[Sequence[int]] = None,
) -> Dict[int, Reference]:
    """``{c: reference of the labelled images of class c}`` for every class, or only for ``classes``
    (then only their images pass through the model); each class needs at least one image."""
    classes = list(range(num_classes)) if classes is None else sorted(set(int(c) for c in classes))
    missing = sorted(set(classes) - set(labelled.labels.tolist()))
    if missing:
        raise ValueError(
            "the labelled set has no image of class %d, so it has no reference" % missing[0]
        )
    if len(classes) < num_classes:
        labelled = labelled.subset(np.flatnonzero(np.isin(labelled.labels.numpy(), classes)))
    description = type(model).__name__
    builders = {
        c: ReferenceBuilder(threshold_ratio, threshold_stat, grid=0, model=description)
        for c in classes
    }
    for rows, _, acts in _recorded_batches(model, layers, labelled.images, batch_size, device):
        labels = labelled.labels[rows]
        for c in labels.unique().tolist():
            mask = (labels == c).numpy()
            builders[c].update(_rows(acts, mask), image_ids=labelled.ids[rows][mask])
    return {c: builder.finalize() for c, builder in builders.items()}


def predict_and_score(
    model: nn.Module,
    layers: Sequence[str],
    references: Dict[int, Reference],
    images: ImageSet,
    *,
    batch_size: int,
    device: torch.device,
    formula: str = constants.FORMULA,
) -> Predictions:
    """Predict every image and score it against the reference of its predicted class.

    ``references`` may hold only some classes (softmax selection needs none): images predicted as
    a class without a reference get the score NaN.
    """
    labels = np.empty(len(images), dtype=np.int64)
    confidence = np.empty(len(images), dtype=np.float64)
    scores = np.empty(len(images), dtype=np.float64)
    for rows, logits, acts in _recorded_batches(model, layers, images.images, batch_size, device):
        probabilities = torch.softmax(logits, dim=1)
        top, predicted = probabilities.max(dim=1)
        labels[rows], confidence[rows] = predicted.numpy(), top.double().numpy()
        batch_scores = np.full(len(predicted), np.nan)
        for c in [c for c in predicted.unique().tolist() if c in references]:
            mask = (predicted == c).numpy()
            batch_scores[mask] = (
                references[c]
                .score(_rows(acts, mask), formula, image_ids=images.ids[rows][mask])
                .numpy()
            )
        scores[rows] = batch_scores
    return Predictions(labels, confidence, scores)
