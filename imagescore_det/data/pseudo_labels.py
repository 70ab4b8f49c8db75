"""Pseudo labels on disk: COCO-style JSON, the per-image score CSV, and their registration (docs/method.md §2 step 6).

Building the JSON and the CSV rows are plain functions of :class:`ScoredImage` records, so tests
and tools use them without a trainer. Every file is written atomically. The JSON's categories are
1..K in the labelled set's class order, so Detectron2's ``load_coco_json`` maps them onto the same
contiguous ids as the labelled set. Each registered record carries ``"pseudo_labelled": True`` and
its ``"ignore_boxes"`` (docs/method.md §2 item 8), which :class:`PseudoLabelDatasetMapper` keeps.
"""

import csv
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.data.datasets import load_coco_json  # noqa: E402

from ..structures import ScoredImage  # noqa: E402
from ..utils.io import atomic_write  # noqa: E402

__all__ = [
    "build_pseudo_label_json",
    "score_table",
    "write_json",
    "write_csv",
    "load_pseudo_labels",
    "load_pseudo_label_dicts",
    "register_pseudo_labels",
]

#: Keys a pseudo-label file must have; checked when one is read back.
REQUIRED_KEYS = ("info", "images", "annotations", "categories")


def image_root_of(images: Sequence[ScoredImage]) -> str:
    """The deepest directory holding every image: JSON file names are relative to it."""
    if not images:
        return ""
    return os.path.commonpath(
        [os.path.dirname(os.path.abspath(image.file_name)) for image in images]
    )


def build_pseudo_label_json(
    images: Sequence[ScoredImage],
    class_names: Sequence[str],
    *,
    keep_empty: bool,
    info: Mapping[str, Any],
    category_ids: Optional[Sequence[int]] = None,
) -> Dict[str, Any]:
    """COCO-style dict of the selected ``images`` (best first): boxes as xywh, one category per class.

    Each image entry also lists its ``ignore_boxes`` as XYXY pixels (not annotations: no class).
    ``category_ids`` are the classes' ids in contiguous order (default 1..K; a COCO-format labelled
    set passes its own, so the pseudo labels use its ids). Images without pseudo labels are dropped
    unless ``keep_empty``. ``info`` is copied into the file's info block with the image root and counts.
    """
    category_ids = _category_ids(class_names, category_ids)
    kept = [image for image in images if image.boxes or keep_empty]
    root = image_root_of(kept)
    coco_images, annotations = [], []
    for number, image in enumerate(kept, start=1):
        coco_images.append(
            {
                "id": number,
                "file_name": os.path.relpath(os.path.abspath(image.file_name), root),
                "height": int(image.height),
                "width": int(image.width),
                "source_image_id": image.image_id,
                "image_score": float(image.ranking_value),
                "ignore_boxes": [[float(v) for v in box] for box in image.ignore_boxes],
            }
        )
        for (x0, y0, x1, y1), cls, score in zip(image.boxes, image.classes, image.confidences):
            if not 0 <= cls < len(class_names):
                raise ValueError(
                    "image %r has a detection of class %r, but there are %d classes"
                    % (image.image_id, cls, len(class_names))
                )
            width, height = float(x1) - float(x0), float(y1) - float(y0)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": number,
                    "category_id": int(category_ids[cls]),
                    "bbox": [float(x0), float(y0), width, height],
                    "area": width * height,
                    "iscrowd": 0,
                    "score": float(score),
                }
            )
    full_info = dict(info)
    full_info.update(
        image_root=root,
        num_images=len(coco_images),
        num_annotations=len(annotations),
        num_dropped_empty=len(images) - len(kept),
    )
    categories = [
        {"id": int(category_id), "name": name}
        for category_id, name in zip(category_ids, class_names)
    ]
    return {
        "info": full_info,
        "images": coco_images,
        "annotations": annotations,
        "categories": categories,
    }


def _category_ids(class_names: Sequence[str], category_ids: Optional[Sequence[int]]) -> List[int]:
    if category_ids is None:
        return list(range(1, len(class_names) + 1))
    if len(category_ids) != len(class_names) or list(category_ids) != sorted(set(category_ids)):
        raise ValueError(
            "category ids %s must rise and match the classes %s one to one"
            % (list(category_ids), list(class_names))
        )
    return list(category_ids)


def score_table(
    images: Sequence[ScoredImage],
    ranks: Sequence[int],
    selected: Sequence[bool],
    *,
    unreadable: Sequence[ScoredImage] = (),
) -> Tuple[List[str], List[list]]:
    """Header and rows of the per-image CSV: id, file, score, rank (1 = best), selected, terms.

    ``unreadable`` images follow as rows with no score, rank or terms and ``scored`` 0, ``error`` saying why.
    A set whose images have kinds (:attr:`ScoredImage.kind`, an uncurated pool) gets a ``kind`` column
    after ``error``.
    """
    layers = list(images[0].terms) if images else []
    kinds = any(image.kind for image in list(images) + list(unreadable))
    header = [
        "image_id",
        "file_name",
        "score",
        "rank",
        "selected",
        "confidence",
        "num_pseudo_labels",
        "scored",
        "error",
    ]
    header += ["kind"] if kinds else []
    header += ["term:%s" % layer for layer in layers]
    rows = []
    for image, rank, chosen in zip(images, ranks, selected):
        if list(image.terms) != layers:
            raise ValueError(
                "image %r has per-layer terms for %s, expected %s"
                % (image.image_id, list(image.terms), layers)
            )
        row = [
            image.image_id,
            image.file_name,
            repr(float(image.ranking_value)),
            int(rank),
            int(bool(chosen)),
        ]
        row += [repr(float(image.mean_confidence)), len(image.boxes), 1, ""]
        row += [image.kind] if kinds else []
        rows.append(row + [repr(float(image.terms[layer])) for layer in layers])
    for image in unreadable:
        row = [image.image_id, image.file_name, "", "", 0, "", 0, 0, image.error]
        rows.append(row + ([image.kind] if kinds else []) + [""] * len(layers))
    return header, rows


def write_json(path: str, payload: Mapping[str, Any]) -> None:
    with atomic_write(path) as f:
        json.dump(payload, f, indent=1)


def write_csv(path: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with atomic_write(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def load_pseudo_labels(path: str) -> Dict[str, Any]:
    """Read a pseudo-label file back, refusing one that lacks the COCO keys or the image root."""
    try:
        with open(path) as f:
            payload = json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError("%s is not valid JSON: %s" % (path, error)) from error
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise ValueError("%s is not a pseudo-label file: it lacks %s" % (path, ", ".join(missing)))
    if "image_root" not in payload["info"]:
        raise ValueError("%s has no info.image_root: image file names cannot be resolved" % path)
    return payload


def register_pseudo_labels(
    name: str,
    json_file: str,
    class_names: Sequence[str],
    category_ids: Optional[Sequence[int]] = None,
) -> int:
    """(Re-)register ``json_file`` as dataset ``name``; return how many images it holds.

    Refuses a file whose categories are not ``category_ids`` (default 1..K) in ``class_names``
    order, since the labelled set's contiguous class ids would then disagree with the pseudo labels'.
    """
    payload = load_pseudo_labels(json_file)
    categories = sorted(payload["categories"], key=lambda category: category["id"])
    found = [(category["id"], category["name"]) for category in categories]
    expected = list(zip(_category_ids(class_names, category_ids), class_names))
    if found != expected:
        raise ValueError(
            "%s has categories %s, but the labelled set's classes are %s"
            % (json_file, found, expected)
        )
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    if name in MetadataCatalog.list():
        MetadataCatalog.remove(name)
    json_file, image_root = os.path.abspath(json_file), payload["info"]["image_root"]
    DatasetCatalog.register(name, lambda: load_pseudo_label_dicts(json_file, image_root, name))
    MetadataCatalog.get(name).set(
        thing_classes=list(class_names),
        json_file=json_file,
        image_root=image_root,
        evaluator_type="coco",
    )
    return len(payload["images"])


def load_pseudo_label_dicts(
    json_file: str, image_root: str, dataset_name: str
) -> List[Dict[str, Any]]:
    """Detectron2's ``load_coco_json`` records, each flagged ``pseudo_labelled`` with its ignore boxes."""
    ignore_boxes = {
        image["id"]: image.get("ignore_boxes", [])
        for image in load_pseudo_labels(json_file)["images"]
    }
    records = load_coco_json(json_file, image_root, dataset_name)
    for record in records:
        record["pseudo_labelled"] = True
        record["ignore_boxes"] = ignore_boxes[record["image_id"]]
    return records
