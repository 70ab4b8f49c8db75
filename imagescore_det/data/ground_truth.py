"""Ground-truth boxes of registered datasets, looked up one way for every consumer.

Box mode builds its per-class references from the labelled set's boxes, the pseudo-label
studies compare pseudo labels with the unlabelled set's boxes, and the evaluation-noise measure
(:mod:`imagescore_det.evaluation.detections`) matches test detections with the test set's boxes and
VOC "difficult" flags; all read them here, from the Detectron2 dataset dicts (the test loader's
mapper drops annotations).
"""

import os
import xml.etree.ElementTree as ET
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.data import DatasetCatalog  # noqa: E402
from detectron2.structures import BoxMode  # noqa: E402

__all__ = [
    "GroundTruth",
    "ground_truth_from_dicts",
    "add_voc_difficult",
    "ground_truth_of",
    "has_boxes",
]

#: The ``"kind"`` of an unlabelled image that is not a distractor (the others name their distractor).

#: ``{image_id: (boxes XYXY [G, 4] float64, contiguous classes [G] int64)}``.
GroundTruth = Mapping[object, Tuple[np.ndarray, np.ndarray]]


def ground_truth_from_dicts(
    dataset_dicts: Sequence[Mapping], *, difficult: bool = False
) -> Dict[object, Tuple[np.ndarray, ...]]:
    """:data:`GroundTruth` of Detectron2 dataset dicts (an image without annotations has no boxes).

    ``difficult``: each value gets a third array, the annotations' ``difficult`` flags (bool [G];
    False where an annotation has none). Detectron2's VOC loader drops them: :func:`add_voc_difficult`
    puts them back from the VOC annotation files. A COCO crowd region (``iscrowd`` 1) is no object:
    it is left out, or with ``difficult`` kept as difficult (both protocols ignore detections on it).
    """
    truth = {}
    for record in dataset_dicts:
        annotations = [
            a for a in record.get("annotations", []) if difficult or not a.get("iscrowd", 0)
        ]
        boxes = [
            BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS) for a in annotations
        ]
        truth[record["image_id"]] = (
            np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
            np.asarray([a["category_id"] for a in annotations], dtype=np.int64),
        )
        if difficult:
            flags = [bool(int(a.get("difficult", 0)) or a.get("iscrowd", 0)) for a in annotations]
            truth[record["image_id"]] += (np.asarray(flags, dtype=bool),)
    return truth


def add_voc_difficult(dataset_dicts: Sequence[Mapping], dirname: str) -> List[dict]:
    """Copies of the dicts of a VOC-format set (``dirname``: its folder, with ``Annotations/``) whose
    annotations carry VOC's ``difficult`` flag, read from ``Annotations/<image_id>.xml`` as
    Detectron2's VOC evaluator reads it (Detectron2's loader keeps the objects in that file's order
    but drops the flag)."""
    found = []
    for record in dataset_dicts:
        path = os.path.join(dirname, "Annotations", "%s.xml" % record["image_id"])
        objects = ET.parse(path).findall("object")
        annotations = record.get("annotations", [])
        if len(objects) != len(annotations):
            raise ValueError(
                "%s lists %d objects, but the dataset dict of image %r has %d annotations"
                % (path, len(objects), record["image_id"], len(annotations))
            )
        flags = [int(obj.find("difficult").text) for obj in objects]
        found.append(
            dict(
                record,
                annotations=[dict(a, difficult=flag) for a, flag in zip(annotations, flags)],
            )
        )
    return found


def ground_truth_of(dataset_names: Sequence[str]) -> Dict[object, Tuple[np.ndarray, np.ndarray]]:
    """:data:`GroundTruth` of the registered datasets ``dataset_names``, together."""
    return ground_truth_from_dicts(
        [record for name in dataset_names for record in DatasetCatalog.get(name)]
    )


def has_boxes(truth: GroundTruth) -> bool:
    """Whether any image of ``truth`` has a ground-truth box (an image folder has none)."""
    return any(len(classes) for _, classes in truth.values())
