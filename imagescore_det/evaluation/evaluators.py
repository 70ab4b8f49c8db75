"""The evaluator of a test set follows its ``evaluator_type`` (issue 11).

- ``"coco"``: Detectron2's ``COCOEvaluator``; its ``bbox/AP50`` is the COCO protocol (AP 0, not
  NaN, for a model that detects nothing: :class:`NoDetectionsCOCOEvaluator`).
- ``"pascal_voc"``: Detectron2's ``PascalVOCDetectionEvaluator`` (the paper's metric; results under
  ``"bbox"``, so ``bbox/AP50`` is the VOC AP50 everywhere in this project) and, beside it, COCO-style
  AP/AP50 computed by pycocotools' own ``COCOeval`` under ``"bbox_coco"``.

The two protocols give different numbers on the same model (VOC 2007's 11-point AP vs COCO's
101-point interpolation; VOC ignores "difficult" boxes, the COCO conversion counts them), so every
log line names the protocol.
"""

import logging
import math
import os

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.evaluation import COCOEvaluator, DatasetEvaluators, PascalVOCDetectionEvaluator  # noqa: E402

__all__ = [
    "ap50",
    "ap50_text",
    "COCO_STYLE_KEY",
    "COCOStyleEvaluator",
    "NoDetectionsCOCOEvaluator",
    "VOCAndCOCOStyleEvaluator",
    "build_evaluator",
    "protocol_of",
]

logger = logging.getLogger(__name__)

#: Results key of the COCO-style metrics on a VOC-format test set ("bbox" stays the VOC protocol's).
COCO_STYLE_KEY = "bbox_coco"


def protocol_of(dataset_name: str) -> str:
    """Which protocol ``bbox/AP50`` of this test set follows, for log lines."""
    kind = MetadataCatalog.get(dataset_name).get("evaluator_type")
    return {"coco": "COCO protocol", "pascal_voc": "Pascal VOC protocol"}.get(
        kind, "evaluator_type %r" % kind
    )


#: The figures of COCOEvaluator that a set with ground-truth boxes always defines.
_DEFINED_WITH_BOXES = ("AP", "AP50", "AP75")


class NoDetectionsCOCOEvaluator(COCOEvaluator):
    """Detectron2's COCOEvaluator, except where the model detected nothing on the whole set: there
    it reports NaN for every figure (it skips COCOeval), which a study would average as a number.
    A set with ground-truth boxes and no detection has AP 0 (recall 0 at every threshold), so
    AP / AP50 / AP75 are reported as 0 with a warning naming the set; the figures by object size
    stay NaN (the set may lack a size)."""

    def __init__(self, dataset_name: str, **kwargs):
        super().__init__(dataset_name, **kwargs)
        self._dataset_name = dataset_name

    def evaluate(self, img_ids=None):
        results = super().evaluate(img_ids)
        box = (results or {}).get("bbox")
        if (
            box
            and all(math.isnan(box[key]) for key in _DEFINED_WITH_BOXES)
            and _has_boxes(self._dataset_name)
        ):
            logger.warning(
                "The model detected nothing on %s: COCOEvaluator gives NaN, reported as AP 0",
                self._dataset_name,
            )
            box.update({key: 0.0 for key in _DEFINED_WITH_BOXES})
        return results


def _has_boxes(dataset_name: str) -> bool:
    return any(record.get("annotations") for record in DatasetCatalog.get(dataset_name))


class COCOStyleEvaluator(NoDetectionsCOCOEvaluator):
    """COCO-style box AP of a set that is not in COCO format, with pycocotools' reference COCOeval.

    Detectron2 converts the set to a COCO file in ``output_dir`` and remembers that file in the
    set's metadata; the path is forgotten again here, so a later evaluator (another output folder,
    a re-registered set) converts afresh instead of reading a stale or deleted file.
    """

    def __init__(self, dataset_name: str, output_dir: str):
        metadata = MetadataCatalog.get(dataset_name)
        converted = not hasattr(metadata, "json_file")
        super().__init__(
            dataset_name,
            tasks=("bbox",),
            output_dir=output_dir,
            use_fast_impl=False,
            allow_cached_coco=False,
        )
        if converted:
            del metadata.json_file

    def evaluate(self, img_ids=None):
        results = super().evaluate(img_ids)
        if not results:
            return results
        box = results.pop("bbox")
        logger.info(
            "COCO-style evaluation of %s (pycocotools COCOeval, IoU 0.50:0.95, 101-point; reported as %s/*): AP=%.2f, AP50=%.2f",
            self._dataset_name,
            COCO_STYLE_KEY,
            box["AP"],
            box["AP50"],
        )
        return {COCO_STYLE_KEY: box, **results}


class VOCAndCOCOStyleEvaluator(DatasetEvaluators):
    """Detectron2's VOC evaluator (results under ``bbox``) and :class:`COCOStyleEvaluator` beside it."""

    def __init__(self, dataset_name: str, output_dir: str):
        super().__init__(
            [
                PascalVOCDetectionEvaluator(dataset_name),
                COCOStyleEvaluator(dataset_name, output_dir),
            ]
        )
        self._dataset_name = dataset_name

    def evaluate(self):
        results = super().evaluate()
        if results and "bbox" in results and COCO_STYLE_KEY in results:
            year = MetadataCatalog.get(self._dataset_name).year
            logger.info(
                "AP50 on %s: %.2f by the Pascal VOC protocol (%s metric; bbox/AP50), %.2f COCO-style by pycocotools (%s/AP50)",
                self._dataset_name,
                results["bbox"]["AP50"],
                "11-point VOC2007" if year == 2007 else "area-under-curve VOC2012",
                results[COCO_STYLE_KEY]["AP50"],
                COCO_STYLE_KEY,
            )
        return results


def build_evaluator(cfg, dataset_name: str, output_folder: str = None):
    """The evaluator for ``dataset_name``'s ``evaluator_type``; files go to ``OUTPUT_DIR/inference/<name>``."""
    output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
    kind = MetadataCatalog.get(dataset_name).get("evaluator_type")
    if kind == "coco":
        return NoDetectionsCOCOEvaluator(dataset_name, output_dir=output_folder)
    if kind == "pascal_voc":
        return VOCAndCOCOStyleEvaluator(dataset_name, output_folder)
    raise ValueError(
        "test dataset %r has evaluator_type %r: only COCO-format ('coco') and VOC-format ('pascal_voc') sets "
        "can be evaluated (an image folder has no annotations)" % (dataset_name, kind)
    )


def ap50(flat_results, key: str = "bbox"):
    """``<key>/AP50`` from flattened evaluation results (the first test set's, if there are several), or None.

    ``flat_results`` may be ``EventStorage.latest()``, whose values are (value, iteration).
    """
    value = next(
        (value for name, value in flat_results.items() if name.endswith(key + "/AP50")), None
    )
    return value[0] if isinstance(value, tuple) else value


def ap50_text(dataset_name: str, flat_results) -> str:
    """'47.35 (Pascal VOC protocol; COCO-style by pycocotools: 44.10)': the protocol named beside each number."""
    text = "%.2f (%s" % (ap50(flat_results), protocol_of(dataset_name))
    coco_style = ap50(flat_results, COCO_STYLE_KEY)
    return text + (
        "; COCO-style by pycocotools: %.2f)" % coco_style if coco_style is not None else ")"
    )
