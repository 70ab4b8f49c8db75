"""Ground-truth boxes of registered datasets, looked up one way for every consumer.

Box mode builds its per-class references from the labelled set's boxes, and the pseudo-label
studies compare pseudo labels with the unlabelled set's boxes; both read them here, from the
Detectron2 dataset dicts (the test loader's mapper drops annotations).
"""

from typing import Dict, Mapping, Sequence, Tuple

import numpy as np

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.data import DatasetCatalog  # noqa: E402
from detectron2.structures import BoxMode  # noqa: E402

__all__ = ["GroundTruth", "ground_truth_from_dicts", "ground_truth_of", "has_boxes"]

#: ``{image_id: (boxes XYXY [G, 4] float64, contiguous classes [G] int64)}``.
GroundTruth = Mapping[object, Tuple[np.ndarray, np.ndarray]]


def ground_truth_from_dicts(
    dataset_dicts: Sequence[Mapping],
) -> Dict[object, Tuple[np.ndarray, np.ndarray]]:
    """:data:`GroundTruth` of Detectron2 dataset dicts (an image without annotations has no boxes)."""
    truth = {}
    for record in dataset_dicts:
        annotations = record.get("annotations", [])
        boxes = [
            BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS) for a in annotations
        ]
        truth[record["image_id"]] = (
            np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
            np.asarray([a["category_id"] for a in annotations], dtype=np.int64),
        )
    return truth


def ground_truth_of(dataset_names: Sequence[str]) -> Dict[object, Tuple[np.ndarray, np.ndarray]]:
    """:data:`GroundTruth` of the registered datasets ``dataset_names``, together."""
    return ground_truth_from_dicts(
        [record for name in dataset_names for record in DatasetCatalog.get(name)]
    )


def has_boxes(truth: GroundTruth) -> bool:
    """Whether any image of ``truth`` has a ground-truth box (an image folder has none)."""
    return any(len(classes) for _, classes in truth.values())
