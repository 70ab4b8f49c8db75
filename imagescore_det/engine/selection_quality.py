"""How trustworthy a selection's pseudo labels are, measured against ground truth (issue 3, item 5).

Three strategies pick the same fraction of one scored set: the image score, the mean detection
confidence (the paper's softmax baseline) and a seeded random draw (:func:`.selection.select_by_strategy`,
which the swap uses too); "all" keeps every image. For the images each keeps,
pseudo labels are matched to ground-truth boxes (same class, IoU >= 0.5, greedy by confidence as
in the VOC evaluation) and summarised as precision, recall and the share of images whose pseudo
labels are all correct. No second training run is needed.
"""
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np
from pycocotools import mask as mask_util

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.structures import BoxMode  # noqa: E402

from ..data.pseudo_labels import ScoredImage  # noqa: E402
from .selection import STRATEGIES, select_by_strategy  # noqa: E402

__all__ = [
    "IOU_THRESHOLD",
    "ground_truth_from_dicts",
    "match_pseudo_labels",
    "selection_quality",
    "pseudo_label_file_quality",
    "compare_strategies",
    "format_table",
]

#: A pseudo label is correct when it overlaps a same-class ground-truth box this much (VOC's AP50 rule).
IOU_THRESHOLD = 0.5

GroundTruth = Mapping[object, Tuple[np.ndarray, np.ndarray]]


def ground_truth_from_dicts(dataset_dicts: Sequence[Mapping]) -> Dict[object, Tuple[np.ndarray, np.ndarray]]:
    """``{image_id: (boxes XYXY [G, 4], contiguous classes [G])}`` from Detectron2 dataset dicts."""
    truth = {}
    for record in dataset_dicts:
        annotations = record.get("annotations", [])
        boxes = [BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS) for a in annotations]
        truth[record["image_id"]] = (
            np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
            np.asarray([a["category_id"] for a in annotations], dtype=np.int64),
        )
    return truth


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


def selection_quality(images: Sequence[ScoredImage], truth: GroundTruth, indices: Sequence[int]) -> Dict[str, float]:
    """Pseudo-label precision and recall over the kept images, and the all-correct share.

    Recall counts the kept images' ground-truth objects. The all-correct share is taken over kept
    images that have at least one pseudo label (an image with none teaches nothing and is dropped
    from the pseudo-label file by default); those are counted apart as ``empty``.
    Undefined ratios (nothing to divide by) are NaN.
    """
    hits = labels = objects = labelled_images = all_correct = 0
    for index in indices:
        image = images[index]
        if image.image_id not in truth:
            raise ValueError("image %r has no ground truth to compare its pseudo labels with" % (image.image_id,))
        truth_boxes, truth_classes = truth[image.image_id]
        correct = match_pseudo_labels(image.boxes, image.classes, image.scores, truth_boxes, truth_classes)
        hits += int(correct.sum())
        labels += len(correct)
        objects += len(truth_classes)
        if len(correct):
            labelled_images += 1
            all_correct += int(correct.all())
    ratio = lambda numerator, denominator: numerator / denominator if denominator else float("nan")  # noqa: E731
    return {
        "images": len(indices),
        "empty": len(indices) - labelled_images,
        "pseudo_labels": labels,
        "precision": ratio(hits, labels),
        "recall": ratio(hits, objects),
        "all_correct_share": ratio(all_correct, labelled_images),
    }


def pseudo_label_file_quality(payload: Mapping, truth: GroundTruth) -> Dict[str, float]:
    """Images, boxes, precision and recall of a pseudo-label file (:func:`..data.pseudo_labels.load_pseudo_labels`).

    Matching as in :func:`selection_quality`; recall counts the ground-truth objects of the images
    in the file (kept images without pseudo labels are not in it unless KEEP_EMPTY).
    """
    boxes_of: Dict[int, List] = {image["id"]: [] for image in payload["images"]}
    for annotation in payload["annotations"]:
        boxes_of[annotation["image_id"]].append(annotation)
    hits = objects = 0
    for image in payload["images"]:
        if image["source_image_id"] not in truth:
            raise ValueError("pseudo-labelled image %r has no ground truth to compare with" % (image["source_image_id"],))
        truth_boxes, truth_classes = truth[image["source_image_id"]]
        found = boxes_of[image["id"]]
        xyxy = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in found)]
        correct = match_pseudo_labels(xyxy, [a["category_id"] - 1 for a in found], [a["score"] for a in found], truth_boxes, truth_classes)
        hits += int(correct.sum())
        objects += len(truth_classes)
    labels = len(payload["annotations"])
    return {
        "images": len(payload["images"]),
        "boxes": labels,
        "precision": hits / labels if labels else float("nan"),
        "recall": hits / objects if objects else float("nan"),
    }


def compare_strategies(
    images: Sequence[ScoredImage], truth: GroundTruth, fraction: float, *, seed: int = 0
) -> List[Dict[str, object]]:
    """One row per strategy: the same fraction of the same scored set, then "all" (no selection)."""
    rows = []
    for strategy in STRATEGIES:
        indices = select_by_strategy(images, strategy, fraction, seed=seed)
        rows.append({"strategy": strategy, **selection_quality(images, truth, indices)})
    return rows


def format_table(rows: Sequence[Mapping[str, object]]) -> str:
    """A Markdown table of :func:`compare_strategies` rows, readable in a terminal too."""
    columns = ["strategy", "images", "empty", "pseudo_labels", "precision", "recall", "all_correct_share"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = ["%.3f" % row[c] if isinstance(row[c], float) else str(row[c]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
