"""A test set's per-image detections, and the noise of its VOC AP50 (``tools/eval_noise.py``).

:class:`DetectionCollector` is a Detectron2 ``DatasetEvaluator`` that keeps every image's
detections in the convention of Detectron2's ``PascalVOCDetectionEvaluator`` (1-based ``x1 + 1``,
``y1 + 1``, coordinates to 0.1 and scores to 0.001, as that evaluator writes them to its result
files), and at :meth:`~DetectionCollector.evaluate` computes the VOC AP50 on every image and its
sd over a bootstrap of the test images (:func:`.noise.bootstrap_ap50`), the ground truth from the
dataset dicts with the VOC "difficult" flags. On a VOC-format test set its AP50 is the VOC
evaluator's ``bbox/AP50``.

:func:`evaluation_noise` runs one checkpoint on ``DATASETS.TEST[0]`` with both evaluators in one
pass of ``inference_on_dataset`` and writes the result as JSON.
"""

import json
import logging
import os
from typing import Dict, Optional

import numpy as np
import torch

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader  # noqa: E402
from detectron2.evaluation import (  # noqa: E402
    DatasetEvaluator,
    DatasetEvaluators,
    PascalVOCDetectionEvaluator,
    inference_on_dataset,
)
from detectron2.modeling import build_model  # noqa: E402
from detectron2.utils import comm  # noqa: E402

from ..data.ground_truth import add_voc_difficult, ground_truth_from_dicts  # noqa: E402
from ..utils.io import atomic_write  # noqa: E402
from .noise import bootstrap_ap50, bootstrap_paired_ap50  # noqa: E402

__all__ = ["NOISE_KEY", "NOISE_FILE", "DetectionCollector", "truth_of_test_set", "evaluation_noise"]

logger = logging.getLogger(__name__)

#: Results key of :class:`DetectionCollector` ("bbox" stays the VOC evaluator's).
NOISE_KEY = "bbox_noise"
NOISE_FILE = "eval_noise.json"


def _voc_value(value, digits: int) -> float:
    """A number as the VOC evaluator's result file holds it: formatted to ``digits``, read back."""
    return float(f"{value:.{digits}f}")


def truth_of_test_set(dataset_name: str) -> Dict[object, tuple]:
    """``{image: (boxes, classes, difficult)}`` of a test set in VOC's 1-based convention (the
    dataset dicts' ``x1 + 1``, ``y1 + 1``: a VOC set's annotation-file values); a VOC-format set's
    difficult flags come from its annotation files, any other set's from its annotations'
    ``difficult`` keys (none: every box counts)."""
    dicts = DatasetCatalog.get(dataset_name)
    metadata = MetadataCatalog.get(dataset_name)
    if metadata.get("evaluator_type") == "pascal_voc":
        dicts = add_voc_difficult(dicts, metadata.dirname)
    truth = {}
    for image, (boxes, classes, difficult) in ground_truth_from_dicts(
        dicts, difficult=True
    ).items():
        boxes = boxes.copy()
        boxes[:, :2] += 1.0
        truth[image] = (boxes, classes, difficult)
    return truth


class DetectionCollector(DatasetEvaluator):
    """Keeps each image's detections (:attr:`detections`, in the order processed); evaluates to
    ``{NOISE_KEY: {"AP50", "AP50_bootstrap_sd", "resamples", "seed", "images", "metric"}}``."""

    def __init__(self, dataset_name: str, *, resamples: int = 1000, seed: int = 0):
        self.dataset_name, self.resamples, self.seed = dataset_name, resamples, seed
        metadata = MetadataCatalog.get(dataset_name)
        self.num_classes = len(metadata.thing_classes)
        self.use_07_metric = metadata.get("year") == 2007
        self.detections: Dict[object, tuple] = {}
        self.gathered: Dict[
            object, tuple
        ] = {}  # after evaluate(), on the main process: every image's

    def reset(self):
        self.detections = {}

    def process(self, inputs, outputs):
        for record, output in zip(inputs, outputs):
            instances = output["instances"].to(torch.device("cpu"))
            boxes = instances.pred_boxes.tensor.numpy()
            rows = []
            for box in boxes:
                xmin, ymin, xmax, ymax = box
                xmin += 1  # as PascalVOCDetectionEvaluator.process: float32, then text
                ymin += 1
                rows.append([_voc_value(v, 1) for v in (xmin, ymin, xmax, ymax)])
            self.detections[record["image_id"]] = (
                np.asarray(rows, dtype=np.float64).reshape(-1, 4),
                np.asarray([_voc_value(s, 3) for s in instances.scores.tolist()]),
                np.asarray(instances.pred_classes.tolist(), dtype=np.int64),
            )

    def evaluate(self):
        gathered = comm.gather(self.detections, dst=0)
        if not comm.is_main_process():
            return None
        detections = {}
        for part in gathered:
            detections.update(part)
        truth = truth_of_test_set(self.dataset_name)
        detections = {image: detections[image] for image in truth if image in detections}
        self.gathered = detections  # every process's, for a paired comparison on the main one
        ap50, sd = bootstrap_ap50(
            detections,
            truth,
            self.resamples,
            self.seed,
            num_classes=self.num_classes,
            use_07_metric=self.use_07_metric,
        )
        return {
            NOISE_KEY: {
                "AP50": ap50,
                "AP50_bootstrap_sd": sd,
                "resamples": self.resamples,
                "seed": self.seed,
                "images": len(truth),
                "metric": "VOC2007 11-point" if self.use_07_metric else "VOC area under the curve",
            }
        }


def _collect(cfg, weights: str, dataset: str, resamples: int, seed: int):
    """One checkpoint's pass over ``dataset``: its collector and the evaluators' results."""
    model = build_model(cfg)
    model.eval()
    DetectionCheckpointer(model).load(weights)
    collector = DetectionCollector(dataset, resamples=resamples, seed=seed)
    evaluators = [collector]
    if MetadataCatalog.get(dataset).get("evaluator_type") == "pascal_voc":
        evaluators.append(PascalVOCDetectionEvaluator(dataset))
    results = inference_on_dataset(
        model, build_detection_test_loader(cfg, dataset), DatasetEvaluators(evaluators)
    )
    return collector, results


def evaluation_noise(
    cfg,
    weights: str,
    output_dir: str,
    *,
    resamples: int = 1000,
    seed: int = 0,
    compare_weights: Optional[str] = None,
) -> Optional[dict]:
    """Run ``weights`` on ``cfg.DATASETS.TEST[0]`` (Detectron2's test loader, as training's
    evaluation) with :class:`DetectionCollector` and, on a VOC-format set, Detectron2's VOC evaluator
    beside it; write ``output_dir/eval_noise.json``. With ``compare_weights`` the second checkpoint
    runs too, and the record adds its AP50 and the bootstrap sd of the paired difference
    (:func:`.noise.bootstrap_paired_ap50`, the same resamples). Returns the record on the main
    process."""
    dataset = cfg.DATASETS.TEST[0]
    collector, results = _collect(cfg, weights, dataset, resamples, seed)
    other = _collect(cfg, compare_weights, dataset, resamples, seed)[0] if compare_weights else None
    if not comm.is_main_process():
        return None
    record = dict(results[NOISE_KEY], dataset=dataset, weights=weights)
    record["voc_evaluator_AP50"] = results["bbox"]["AP50"] if "bbox" in results else None
    if other is not None:
        _, other_ap50, difference_sd = bootstrap_paired_ap50(
            collector.gathered,
            other.gathered,
            truth_of_test_set(dataset),
            resamples,
            seed,
            num_classes=collector.num_classes,
            use_07_metric=collector.use_07_metric,
        )
        record.update(
            compare_weights=compare_weights,
            compare_AP50=other_ap50,
            difference_bootstrap_sd=difference_sd,
        )
    with atomic_write(os.path.join(output_dir, NOISE_FILE)) as f:
        json.dump(record, f, indent=1)
    logger.info(
        "AP50 on %s: %.2f (%s), bootstrap sd over %d resamples of its %d images: %.2f",
        dataset,
        record["AP50"],
        record["metric"],
        resamples,
        record["images"],
        record["AP50_bootstrap_sd"],
    )
    return record
