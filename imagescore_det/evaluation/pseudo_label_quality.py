"""How trustworthy a selection's pseudo labels are, measured against ground truth (issue 3, item 5).

Three strategies pick the same fraction of one scored set: the image score, the mean detection
confidence (the paper's softmax baseline) and a seeded random draw (:func:`..detection.selection.select_by_strategy`,
which the swap uses too); "all" keeps every image. For the images each keeps,
pseudo labels are matched to ground-truth boxes (same class, IoU >= 0.5, greedy by confidence as
in the VOC evaluation) and summarised as precision, recall and the share of images whose pseudo
labels are all correct; in a set with kinds (an uncurated pool), also by the distractors it kept.
No second training run is needed.
"""

from typing import Dict, Iterable, List, Mapping, Sequence, Tuple

import numpy as np
from pycocotools import mask as mask_util

from ..data.ground_truth import GroundTruth
from ..detection.selection import IMAGE_STRATEGIES, distractors_kept, select_by_strategy
from ..structures import ScoredImage

__all__ = [
    "IOU_THRESHOLD",
    "match_pseudo_labels",
    "label_quality",
    "selection_quality",
    "pseudo_label_file_quality",
    "compare_strategies",
]

#: A pseudo label is correct when it overlaps a same-class ground-truth box this much (VOC's AP50 rule).
IOU_THRESHOLD = 0.5

#: One image's pseudo labels: (source image id, XYXY boxes, contiguous classes, confidences).
LabelledImage = Tuple[object, Sequence, Sequence[int], Sequence[float]]


def _xywh(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]])


def match_pseudo_labels(
    boxes, classes, scores, truth_boxes, truth_classes, *, iou_threshold: float = IOU_THRESHOLD
) -> np.ndarray:
    """Boolean per pseudo label: does it claim a ground-truth box of its class with IoU >= threshold?

    Pseudo labels are taken by descending confidence; each claims the unclaimed same-class box it
    overlaps most, so two labels on one object count one hit and one false positive.
    """
    classes, truth_classes = np.asarray(classes), np.asarray(truth_classes)
    correct = np.zeros(len(classes), dtype=bool)
    if len(classes) == 0 or len(truth_classes) == 0:
        return correct
    ious = np.asarray(mask_util.iou(_xywh(boxes), _xywh(truth_boxes), [0] * len(truth_classes)))
    claimed = np.zeros(len(truth_classes), dtype=bool)
    for index in np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable"):
        candidates = np.where((truth_classes == classes[index]) & ~claimed, ious[index], -1.0)
        best = int(np.argmax(candidates))
        if candidates[best] >= iou_threshold:
            correct[index] = claimed[best] = True
    return correct


def label_quality(labelled: Iterable[LabelledImage], truth: GroundTruth) -> Dict[str, float]:
    """Precision and recall of the pseudo labels of ``labelled`` images, and their all-correct share.

    Recall counts those images' ground-truth objects. The all-correct share is taken over images
    that have at least one pseudo label (an image with none teaches nothing and is dropped from the
    pseudo-label file by default); those are counted apart as ``empty``. Undefined ratios (nothing
    to divide by) are NaN.
    """
    images = hits = labels = objects = labelled_images = all_correct = 0
    for image_id, boxes, classes, confidences in labelled:
        if image_id not in truth:
            raise ValueError(
                "image %r has no ground truth to compare its pseudo labels with" % (image_id,)
            )
        truth_boxes, truth_classes = truth[image_id]
        correct = match_pseudo_labels(boxes, classes, confidences, truth_boxes, truth_classes)
        images += 1
        hits += int(correct.sum())
        labels += len(correct)
        objects += len(truth_classes)
        if len(correct):
            labelled_images += 1
            all_correct += int(correct.all())
    ratio = lambda numerator, denominator: numerator / denominator if denominator else float("nan")  # noqa: E731
    return {
        "images": images,
        "empty": images - labelled_images,
        "pseudo_labels": labels,
        "precision": ratio(hits, labels),
        "recall": ratio(hits, objects),
        "all_correct_share": ratio(all_correct, labelled_images),
    }


def selection_quality(
    images: Sequence[ScoredImage], truth: GroundTruth, indices: Sequence[int]
) -> Dict[str, float]:
    """:func:`label_quality` of the images a selection keeps (``indices`` into ``images``), and in a
    set with kinds the distractors it kept (:func:`..detection.selection.distractors_kept`)."""
    kept = (images[index] for index in indices)
    quality = label_quality(
        ((image.image_id, image.boxes, image.classes, image.confidences) for image in kept), truth
    )
    return {**quality, **distractors_kept(images, indices)}


def pseudo_label_file_quality(payload: Mapping, truth: GroundTruth) -> Dict[str, object]:
    """Images, boxes, precision and recall of a pseudo-label file (:func:`..data.pseudo_labels.load_pseudo_labels`).

    Matching as in :func:`label_quality`; recall counts the ground-truth objects of the images in
    the file (kept images without pseudo labels are not in it unless KEEP_EMPTY). A file of a set with
    kinds adds the distractors its selection kept, every kept image counted (its info's ``kinds_kept``).
    """
    boxes_of: Dict[int, List] = {image["id"]: [] for image in payload["images"]}
    for annotation in payload["annotations"]:
        boxes_of[annotation["image_id"]].append(annotation)
    category_ids = sorted(category["id"] for category in payload["categories"])
    contiguous = {category_id: index for index, category_id in enumerate(category_ids)}

    def labelled():
        for image in payload["images"]:
            found = boxes_of[image["id"]]
            xyxy = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in found)]
            classes = [contiguous[a["category_id"]] for a in found]
            yield image["source_image_id"], xyxy, classes, [a["score"] for a in found]

    quality = label_quality(labelled(), truth)
    found = {
        "images": quality["images"],
        "boxes": quality["pseudo_labels"],
        "precision": quality["precision"],
        "recall": quality["recall"],
        **payload["info"].get("kinds_kept", {}),
    }
    return found


def compare_strategies(
    images: Sequence[ScoredImage], truth: GroundTruth, fraction: float, *, seed: int = 0
) -> List[Dict[str, object]]:
    """One row per image strategy: the same fraction of the same scored set, then "all" (no selection)."""
    rows = []
    for strategy in IMAGE_STRATEGIES:
        indices = select_by_strategy(images, strategy, fraction, seed=seed)
        rows.append({"strategy": strategy, **selection_quality(images, truth, indices)})
    return rows
