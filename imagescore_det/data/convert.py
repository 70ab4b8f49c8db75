"""Write one VOC-layout split as a COCO-format detection file (for ``NAME=coco:JSON_FILE:IMAGE_DIR``).

Reads the split with Detectron2's own VOC loader; the JSON names each image relative to the split's
``JPEGImages`` folder (the IMAGE_DIR to register it with), stores boxes as COCO xywh in pixels, and
gives the classes ids 1..K in list order unless told otherwise. Example::

    python -m imagescore_det.data.convert --voc datasets/byod_voc/VOC2007 --split trainval \\
        --classes red_square,green_circle,blue_triangle,yellow_cross,magenta_ring --out datasets/byod_coco/trainval.json
"""

import argparse
import json
import os
from typing import Optional, Sequence

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.data.datasets.pascal_voc import CLASS_NAMES as VOC_CLASSES  # noqa: E402

from ..utils.io import atomic_write  # noqa: E402
from .registry import load_checked_voc  # noqa: E402

__all__ = ["voc_split_to_coco", "main"]


def voc_split_to_coco(
    dirname: str,
    split: str,
    class_names: Sequence[str],
    category_ids: Optional[Sequence[int]] = None,
) -> dict:
    """COCO-format dict of ``dirname``'s ``split``; ``category_ids`` (default 1..K) follow ``class_names``."""
    category_ids = (
        list(category_ids) if category_ids is not None else list(range(1, len(class_names) + 1))
    )
    images, annotations = [], []
    image_root = os.path.join(dirname, "JPEGImages")
    for number, record in enumerate(load_checked_voc(dirname, split, class_names), start=1):
        images.append(
            {
                "id": number,
                "file_name": os.path.relpath(record["file_name"], image_root),
                "height": record["height"],
                "width": record["width"],
            }
        )
        for annotation in record["annotations"]:
            x0, y0, x1, y1 = annotation["bbox"]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": number,
                    "category_id": category_ids[annotation["category_id"]],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
    categories = [
        {"id": category_id, "name": name} for category_id, name in zip(category_ids, class_names)
    ]
    return {"images": images, "annotations": annotations, "categories": categories}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m imagescore_det.data.convert", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--voc",
        required=True,
        metavar="DIR",
        help="VOC-layout folder (Annotations/, ImageSets/Main/, JPEGImages/)",
    )
    parser.add_argument(
        "--split", required=True, help="split file name under ImageSets/Main, without .txt"
    )
    parser.add_argument(
        "--classes",
        default=",".join(VOC_CLASSES),
        help="comma-separated class list (default: the 20 VOC classes)",
    )
    parser.add_argument(
        "--out", required=True, metavar="FILE", help="COCO JSON to write (atomically)"
    )
    args = parser.parse_args(argv)
    payload = voc_split_to_coco(args.voc, args.split, args.classes.split(","))
    with atomic_write(args.out) as f:
        json.dump(payload, f)
    print(
        "Wrote %d images and %d boxes to %s; register it as NAME=coco:%s:%s"
        % (
            len(payload["images"]),
            len(payload["annotations"]),
            args.out,
            args.out,
            os.path.join(args.voc, "JPEGImages"),
        )
    )
    return payload


if __name__ == "__main__":
    main()
