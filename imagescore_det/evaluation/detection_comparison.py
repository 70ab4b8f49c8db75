"""Two or more detectors side by side on the same test images (``tools/compare_detections.py``):
what a gain in AP looks like on a tile.

Each row is one test image: its ground truth first, then each model's detections at or above a
confidence threshold, drawn by the selection gallery's panel (:func:`.selection_gallery.draw_panel`:
Detectron2's ``Visualizer``; green where a detection matches a ground-truth box by
:func:`.pseudo_label_quality.match_pseudo_labels`, the one matcher, red where it does not). Each
caption counts the detections, the right ones and the true objects.
"""

from typing import Dict, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.data import DatasetMapper  # noqa: E402

from ..data.ground_truth import GroundTruth  # noqa: E402
from ..structures import ScoredImage  # noqa: E402
from ..utils.io import atomic_write  # noqa: E402
from .selection_gallery import CAPTION_HEIGHT, PANEL_SIDE, box_verdicts, draw_panel  # noqa: E402

__all__ = ["TRUTH_LABEL", "detections_of", "draw_detection_comparison"]

#: The column of the ground truth.
TRUTH_LABEL = "ground truth"


@torch.no_grad()
def detections_of(model, cfg, records: Sequence[dict], score_thresh: float) -> list:
    """:class:`ScoredImage` per dataset record: ``model``'s detections (eval mode, the test mapper
    of ``cfg``, boxes in the original image's pixels) with confidence >= ``score_thresh``."""
    model.eval()
    mapper = DatasetMapper(cfg, is_train=False)
    found = []
    for record in records:
        (output,) = model([mapper(dict(record))])
        instances = output["instances"].to("cpu")
        keep = instances.scores >= score_thresh
        found.append(
            ScoredImage(
                record["image_id"],
                record["file_name"],
                record["height"],
                record["width"],
                instances.pred_boxes.tensor[keep].tolist(),
                instances.pred_classes[keep].tolist(),
                instances.scores[keep].tolist(),
            )
        )
    return found


def _caption(label: str, image: ScoredImage, truth: GroundTruth) -> str:
    objects = len(truth[image.image_id][1]) if image.image_id in truth else 0
    if label == TRUTH_LABEL:
        return "%s: %d objects" % (label, objects)
    right = sum(1 for verdict in box_verdicts(image, truth) if verdict)
    return "%s: %d found, %d right / %d" % (label, len(image.boxes), right, objects)


def draw_detection_comparison(
    rows: Sequence[Mapping[str, ScoredImage]],
    truth: GroundTruth,
    class_names: Sequence[str],
    path: str,
) -> Dict[str, int]:
    """Write a PNG with one row per entry of ``rows`` ({model label: its detections on the row's
    image}, the same image across a row), the ground-truth panel first. Returns the grid's size
    (``rows``, ``columns``, ``width``, ``height``)."""
    if not rows:
        raise ValueError("no image to compare detections on (%s)" % path)
    labels = list(rows[0])
    panel_w, panel_h = PANEL_SIDE, PANEL_SIDE + CAPTION_HEIGHT
    columns = 1 + len(labels)
    grid = np.full((len(rows) * panel_h, columns * panel_w, 3), 255, dtype=np.uint8)
    for r, by_label in enumerate(rows):
        if list(by_label) != labels or len({image.image_id for image in by_label.values()}) != 1:
            raise ValueError("row %d of %s does not show the same image for %s" % (r, path, labels))
        first = next(iter(by_label.values()))
        boxes, classes = truth.get(first.image_id, (np.zeros((0, 4)), np.zeros(0)))
        shown = ScoredImage(
            first.image_id,
            first.file_name,
            first.height,
            first.width,
            np.asarray(boxes).reshape(-1, 4).tolist(),
            [int(c) for c in classes],
            [1.0] * len(classes),
        )
        panels = [(TRUTH_LABEL, shown)] + list(by_label.items())
        for c, (label, image) in enumerate(panels):
            grid[r * panel_h : (r + 1) * panel_h, c * panel_w : (c + 1) * panel_w] = draw_panel(
                image, _caption(label, image, truth), class_names, truth
            )
    with atomic_write(path, "wb") as f:
        Image.fromarray(grid).save(f, format="PNG")
    return {"rows": len(rows), "columns": columns, "width": grid.shape[1], "height": grid.shape[0]}
