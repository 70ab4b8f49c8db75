"""How precise one evaluation is: the Pascal VOC AP50 of per-image detections, computed exactly as
Detectron2's ``detectron2/evaluation/pascal_voc_evaluation.py`` does (``voc_eval`` and ``voc_ap``),
and its sd over a bootstrap of the test images. Pure NumPy: no Detectron2, no files.

Inputs, both keyed by image id:

- ``detections``: ``{image: (boxes [N, 4] XYXY, scores [N], classes [N])}``, the images in the order
  the evaluator saw them (Detectron2's evaluator lists each class's detections in that order, which
  decides the order of equal scores);
- ``truth``: ``{image: (boxes [G, 4] XYXY, classes [G], difficult [G])}``, every test image (one
  without objects has empty arrays).

Boxes are in the VOC annotation convention that ``voc_eval`` compares: 1-based, inclusive
(``width = x2 - x1 + 1``). :class:`~imagescore_det.evaluation.detections.DetectionCollector` turns a
model's outputs into that convention exactly as ``PascalVOCDetectionEvaluator.process`` writes them
(``x1 + 1``, ``y1 + 1``, coordinates to 0.1, scores to 0.001).

A class's AP follows ``voc_eval``: its detections sorted by score over the whole set, each matched
greedily to the unmatched ground-truth box of its image with the largest IoU above 0.5 (a match to a
difficult box counts neither way), ``npos`` the non-difficult boxes; AP50 is the mean over the
classes in percent, 11-point for VOC2007 (``use_07_metric``), the area under the curve otherwise.

The bootstrap draws the test images with replacement (an image drawn twice counts twice: its
boxes and its detections). Each detection's true/false-positive flag depends only on its own
image's detections, so the matching is done once; a resample re-sorts the drawn detections and
recomputes precision, recall and AP. Two models' detections on the same test set are resampled
together (:func:`bootstrap_paired_ap50`): the sd of their AP50 difference is the test set's noise
in a paired comparison, where what both models find hard moves both.
"""

from typing import List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = ["voc_ap", "voc_ap50", "bootstrap_ap50", "bootstrap_paired_ap50"]

Detections = Mapping[object, Tuple[np.ndarray, np.ndarray, np.ndarray]]
Truth = Mapping[object, Tuple[np.ndarray, np.ndarray, np.ndarray]]


def voc_ap(rec: np.ndarray, prec: np.ndarray, use_07_metric: bool = False) -> float:
    """Detectron2's ``voc_ap``: the VOC07 11-point AP, or the area under the precision envelope."""
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            if np.sum(rec >= t) == 0:
                p = 0
            else:
                p = np.max(prec[rec >= t])
            ap = ap + p / 11.0
    else:
        mrec = np.concatenate(([0.0], rec, [1.0]))
        mpre = np.concatenate(([0.0], prec, [0.0]))
        # the precision envelope: Detectron2's backward loop of np.maximum, in one call
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]
        i = np.where(mrec[1:] != mrec[:-1])[0]
        ap = np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])
    return ap


def _num_classes(detections: Detections, truth: Truth) -> int:
    found = [np.asarray(c).max() for _, c, _ in truth.values() if len(c)]
    found += [np.asarray(c).max() for _, _, c in detections.values() if len(c)]
    return int(max(found)) + 1 if found else 0


def _class_detections(detections: Detections, truth: Truth, cls: int):
    """One class's detections over the set, in the evaluator's order: (image index, score, box)."""
    index = {image: k for k, image in enumerate(truth)}
    images, scores, boxes = [], [], []
    for image, (b, s, c) in detections.items():
        if image not in index:
            raise KeyError(
                "detections of image %r, which the ground truth does not list" % (image,)
            )
        keep = np.asarray(c) == cls
        images += [index[image]] * int(keep.sum())
        scores.append(np.asarray(s, dtype=np.float64)[keep])
        boxes.append(np.asarray(b, dtype=np.float64).reshape(-1, 4)[keep])
    return (
        np.asarray(images, dtype=np.int64),
        np.concatenate(scores) if scores else np.zeros(0),
        np.concatenate(boxes) if boxes else np.zeros((0, 4)),
    )


def _match(detections: Detections, truth: Truth, cls: int, ovthresh: float):
    """``voc_eval``'s matching of one class: (image index, score, tp, fp) per detection in sorted
    order, and the non-difficult ground-truth count of each image."""
    gt = []
    for boxes, classes, difficult in truth.values():
        keep = np.asarray(classes) == cls
        gt.append(
            {
                "bbox": np.asarray(boxes, dtype=np.float64).reshape(-1, 4)[keep],
                "difficult": np.asarray(difficult, dtype=bool)[keep],
                "det": [False] * int(keep.sum()),
            }
        )
    npos = np.array([int(np.sum(~g["difficult"])) for g in gt], dtype=np.int64)
    image_of, confidence, BB = _class_detections(detections, truth, cls)
    sorted_ind = np.argsort(-confidence)
    BB = BB[sorted_ind, :]
    image_of, confidence = image_of[sorted_ind], confidence[sorted_ind]
    nd = len(image_of)
    tp = np.zeros(nd)
    fp = np.zeros(nd)
    for d in range(nd):
        R = gt[image_of[d]]
        bb = BB[d, :].astype(float)
        ovmax = -np.inf
        BBGT = R["bbox"].astype(float)
        if BBGT.size > 0:
            ixmin = np.maximum(BBGT[:, 0], bb[0])
            iymin = np.maximum(BBGT[:, 1], bb[1])
            ixmax = np.minimum(BBGT[:, 2], bb[2])
            iymax = np.minimum(BBGT[:, 3], bb[3])
            iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
            ih = np.maximum(iymax - iymin + 1.0, 0.0)
            inters = iw * ih
            uni = (
                (bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0)
                + (BBGT[:, 2] - BBGT[:, 0] + 1.0) * (BBGT[:, 3] - BBGT[:, 1] + 1.0)
                - inters
            )
            overlaps = inters / uni
            ovmax = np.max(overlaps)
            jmax = np.argmax(overlaps)
        if ovmax > ovthresh:
            if not R["difficult"][jmax]:
                if not R["det"][jmax]:
                    tp[d] = 1.0
                    R["det"][jmax] = 1
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    return image_of, confidence, tp, fp, npos


def _ap(tp: np.ndarray, fp: np.ndarray, npos: int, use_07_metric: bool) -> float:
    """``voc_eval``'s tail: cumulative precision and recall, then :func:`voc_ap`."""
    fp = np.cumsum(fp)
    tp = np.cumsum(tp)
    with np.errstate(divide="ignore", invalid="ignore"):  # a class without boxes, as Detectron2
        rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return voc_ap(rec, prec, use_07_metric)


def voc_ap50(
    detections: Detections,
    truth: Truth,
    *,
    num_classes: Optional[int] = None,
    use_07_metric: bool = True,
    iou: float = 0.5,
) -> float:
    """The VOC AP at IoU ``iou`` in percent, mean over the ``num_classes`` classes (default: one more
    than the largest class seen), as Detectron2's ``bbox/AP50``."""
    num_classes = _num_classes(detections, truth) if num_classes is None else num_classes
    aps = []
    for cls in range(num_classes):
        _, _, tp, fp, npos = _match(detections, truth, cls, iou)
        aps.append(_ap(tp, fp, int(npos.sum()), use_07_metric) * 100)
    return float(np.mean(aps))


def bootstrap_ap50(
    detections: Detections,
    truth: Truth,
    resamples: int = 1000,
    seed: int = 0,
    *,
    num_classes: Optional[int] = None,
    use_07_metric: bool = True,
    iou: float = 0.5,
) -> Tuple[float, float]:
    """(AP50 on every test image, :func:`voc_ap50`; the sd (ddof 1) of AP50 over ``resamples``
    bootstrap resamples of the test images, drawn with replacement by ``numpy.random.default_rng(seed)``)."""
    whole, values = _bootstrap(
        [detections], truth, resamples, seed, num_classes, use_07_metric, iou
    )
    # about the first value: the same sd, and exactly 0 where every resample gives the same AP50
    return whole[0], float(np.std(values[0] - values[0, 0], ddof=1))


def bootstrap_paired_ap50(
    detections: Detections,
    other: Detections,
    truth: Truth,
    resamples: int = 1000,
    seed: int = 0,
    *,
    num_classes: Optional[int] = None,
    use_07_metric: bool = True,
    iou: float = 0.5,
) -> Tuple[float, float, float]:
    """(AP50 of ``detections``, AP50 of ``other``, the sd (ddof 1) of their difference over the same
    ``resamples`` bootstrap resamples of the test images), as :func:`bootstrap_ap50`."""
    whole, values = _bootstrap(
        [detections, other], truth, resamples, seed, num_classes, use_07_metric, iou
    )
    difference = values[0] - values[1]
    return whole[0], whole[1], float(np.std(difference - difference[0], ddof=1))


def _bootstrap(
    models: Sequence[Detections],
    truth: Truth,
    resamples: int,
    seed: int,
    num_classes: Optional[int],
    use_07_metric: bool,
    iou: float,
) -> Tuple[List[float], np.ndarray]:
    """Each model's AP50 on every image, and [models, resamples] AP50s over one shared stream of
    bootstrap resamples (each model's detections matched once)."""
    if resamples < 2:
        raise ValueError("resamples must be at least 2, not %d" % resamples)
    if num_classes is None:
        num_classes = max(_num_classes(detections, truth) for detections in models)
    matched = [
        [_match(detections, truth, cls, iou) for cls in range(num_classes)] for detections in models
    ]
    whole = [
        float(
            np.mean([_ap(tp, fp, int(npos.sum()), use_07_metric) * 100 for *_, tp, fp, npos in m])
        )
        for m in matched
    ]
    rng = np.random.default_rng(seed)
    n = len(truth)
    values = np.empty((len(models), resamples))
    for r in range(resamples):
        counts = np.bincount(rng.integers(0, n, size=n), minlength=n)
        for k, per_class in enumerate(matched):
            aps = []
            for image_of, confidence, tp, fp, npos in per_class:
                times = counts[image_of]
                order = np.argsort(-np.repeat(confidence, times), kind="stable")
                aps.append(
                    _ap(
                        np.repeat(tp, times)[order],
                        np.repeat(fp, times)[order],
                        int(np.dot(counts, npos)),
                        use_07_metric,
                    )
                    * 100
                )
            values[k, r] = np.mean(aps)
    return whole, values
