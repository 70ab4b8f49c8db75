"""A picture of a selection (issue 18, item 4): people judge a ranking by looking at it.

``selection_gallery.png``, beside the pseudo labels, shows the highest- and the lowest-ranked
scored images (8 of each by default; the ranking value's order, as the CSV's rank), each scaled
into a panel of its own with its pseudo boxes drawn by Detectron2's ``Visualizer``: green where a
box matches a ground-truth box (:func:`.pseudo_label_quality.match_pseudo_labels`, the one
matcher), red where it does not, blue where the set has no ground truth. The caption gives the
rank, the ranking value, the image's kind (in an uncurated pool) and whether the selection kept it.
The best images fill the top rows, best first; the worst the rows below, worst last.

The swap and ``tools/score_voc.py`` both write through :func:`write_selection_and_gallery`: the
selection writer sits in :mod:`imagescore_det.detection`, below the matcher, so the gallery is
drawn here, after it.
"""

import importlib.util
import logging
import math
import os
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.data.detection_utils import read_image  # noqa: E402

from ..data.ground_truth import GroundTruth, ground_truth_of, has_boxes  # noqa: E402
from ..detection.selection import labelled_class_names, write_selection  # noqa: E402
from ..scoring import rank_by_score  # noqa: E402
from ..structures import ScoredImage  # noqa: E402
from ..utils.io import atomic_write  # noqa: E402
from .pseudo_label_quality import match_pseudo_labels  # noqa: E402

__all__ = [
    "GALLERY_NAME",
    "Gallery",
    "require_visualizer",
    "gallery_path",
    "box_verdicts",
    "draw_panel",
    "draw_selection_gallery",
    "write_selection_and_gallery",
]

logger = logging.getLogger(__name__)

GALLERY_NAME = "selection_gallery.png"
#: Panels at each end of the ranking, and panels per row.
PER_END = 8
COLUMNS = 8
#: Each image is scaled to fit a PANEL_SIDE square; its caption sits in a strip below.
PANEL_SIDE = 256
CAPTION_HEIGHT = 28
#: A pseudo box's colour: it matches a ground-truth box, it does not, there is no ground truth.
BOX_COLOURS = {True: "lime", False: "red", None: "deepskyblue"}


@dataclass(frozen=True)
class Gallery:
    """What :func:`draw_selection_gallery` drew: the ids of its panels and the grid they fill."""

    path: str
    top: Tuple  # image ids of the highest-ranked panels, best first
    bottom: Tuple  # image ids of the lowest-ranked panels, in rank order (the worst last)
    rows: int
    columns: int
    panel_size: Tuple[int, int]  # (width, height) of one panel, caption included
    size: Tuple[int, int]  # (width, height) of the PNG


def require_visualizer() -> None:
    """Detectron2's ``Visualizer`` imports OpenCV, which Detectron2 does not install (setup.py does):
    the swap hook calls this at construction, so a missing OpenCV fails a run before iteration 0,
    not at the swap (the module imports Visualizer only when it draws, so the rest works without)."""
    if importlib.util.find_spec("cv2") is None:
        raise ModuleNotFoundError(
            "the selection gallery draws with Detectron2's Visualizer, which needs OpenCV: "
            "pip install opencv-python-headless (setup.py lists it)"
        )


def gallery_path(pseudo_label_file: str) -> str:
    """Where the gallery of a selection goes: beside its pseudo-label file."""
    return os.path.join(os.path.dirname(os.path.abspath(pseudo_label_file)), GALLERY_NAME)


def box_verdicts(image: ScoredImage, truth: Optional[GroundTruth]) -> list:
    """Per pseudo box: True (matches ground truth), False (does not) or None (no ground truth)."""
    if truth is None or image.image_id not in truth:
        return [None] * len(image.boxes)
    return [
        bool(v)
        for v in match_pseudo_labels(
            image.boxes, image.classes, image.confidences, *truth[image.image_id][:2]
        )
    ]


def draw_panel(
    image: ScoredImage,
    caption: str,
    class_names: Sequence[str],
    truth: Optional[GroundTruth],
) -> np.ndarray:
    """uint8 [PANEL_SIDE + CAPTION_HEIGHT, PANEL_SIDE, 3]: the image, its boxes (green where one
    matches ``truth``, red where not, blue without ground truth) and the caption."""
    from detectron2.utils.visualizer import Visualizer  # needs OpenCV: see require_visualizer

    panel = np.full((PANEL_SIDE + CAPTION_HEIGHT, PANEL_SIDE, 3), 255, dtype=np.uint8)
    try:
        pixels = read_image(image.file_name, format="RGB")
    except OSError as error:  # the file changed since it was scored: a grey panel says so
        logger.warning("Selection gallery: cannot read %s (%s)", image.file_name, error)
        pixels, caption = None, caption + " (unreadable)"
    boxes = np.zeros((0, 4))
    if pixels is not None:
        height, width = pixels.shape[:2]
        scale = min(PANEL_SIDE / width, PANEL_SIDE / height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        x0, y0 = (PANEL_SIDE - size[0]) // 2, (PANEL_SIDE - size[1]) // 2
        resized = Image.fromarray(pixels).resize(size, Image.BILINEAR)
        panel[y0 : y0 + size[1], x0 : x0 + size[0]] = np.asarray(resized)
        factors = np.array([size[0] / width, size[1] / height] * 2)
        boxes = np.asarray(image.boxes, dtype=np.float64).reshape(-1, 4) * factors
        boxes += np.array([x0, y0, x0, y0])
    else:
        panel[:PANEL_SIDE] = 128
    visualizer = Visualizer(panel)
    if len(boxes):
        visualizer.overlay_instances(
            boxes=boxes,
            labels=[
                "%s %.2f" % (class_names[c], s) for c, s in zip(image.classes, image.confidences)
            ],
            assigned_colors=[BOX_COLOURS[v] for v in box_verdicts(image, truth)],
        )
    visualizer.draw_text(caption, (PANEL_SIDE / 2, PANEL_SIDE + 5), font_size=9, color="white")
    drawn = visualizer.get_output().get_image()
    if drawn.shape != panel.shape:  # Visualizer draws on a canvas of the panel's size
        raise RuntimeError("Visualizer drew %s, not a %s panel" % (drawn.shape, panel.shape))
    return drawn


def draw_selection_gallery(
    images: Sequence[ScoredImage],
    path: str,
    *,
    class_names: Sequence[str],
    truth: Optional[GroundTruth] = None,
    selected_ids: Sequence = (),
    per_end: int = PER_END,
    columns: int = COLUMNS,
) -> Gallery:
    """Write the gallery of ``images`` (the unreadable ones left out) to ``path`` as a PNG.

    ``truth``: the set's ground truth, to colour each pseudo box right or wrong (None, or a set
    without any box such as an image folder: no verdict); ``selected_ids``: what the selection kept.
    With fewer than ``2 x per_end`` images, every image appears once.
    """
    readable = [image for image in images if not image.error]
    if not readable:
        raise ValueError("no scored image to draw a selection gallery of (%s)" % path)
    order = rank_by_score(
        [image.ranking_value for image in readable], [image.image_id for image in readable]
    )
    top = list(order[:per_end])
    bottom = list(order[max(per_end, len(order) - per_end) :])
    truth = truth if truth is not None and has_boxes(truth) else None
    kept = set(selected_ids)
    width = min(columns, max(len(top), len(bottom)))
    sections = [section for section in (top, bottom) if section]
    rows = sum(math.ceil(len(section) / width) for section in sections)
    panel_w, panel_h = PANEL_SIDE, PANEL_SIDE + CAPTION_HEIGHT
    grid = np.full((rows * panel_h, width * panel_w, 3), 255, dtype=np.uint8)
    rank_of = {int(index): rank for rank, index in enumerate(order, start=1)}
    row = 0
    for section in sections:
        for position, index in enumerate(section):
            image = readable[index]
            caption = "#%d  %.4g" % (rank_of[int(index)], image.ranking_value)
            caption += ("  %s" % image.kind) if image.kind else ""
            caption += "  kept" if image.image_id in kept else ""
            r, c = row + position // width, position % width
            grid[r * panel_h : (r + 1) * panel_h, c * panel_w : (c + 1) * panel_w] = draw_panel(
                image, caption, class_names, truth
            )
        row += math.ceil(len(section) / width)
    with atomic_write(path, "wb") as f:
        Image.fromarray(grid).save(f, format="PNG")
    return Gallery(
        path=path,
        top=tuple(readable[i].image_id for i in top),
        bottom=tuple(readable[i].image_id for i in bottom),
        rows=rows,
        columns=width,
        panel_size=(panel_w, panel_h),
        size=(grid.shape[1], grid.shape[0]),
    )


def write_selection_and_gallery(
    cfg,
    reference,
    images: Sequence[ScoredImage],
    *,
    model_info: Mapping,
    output_dir: Optional[str] = None,
    truth: Optional[GroundTruth] = None,
) -> Dict[str, object]:
    """:func:`..detection.selection.write_selection`, then the gallery of that selection beside its
    pseudo labels; the result gains ``gallery`` (its path). ``truth`` defaults to the ground truth
    of IMAGESCORE.UNLABELLED_DATASETS. Main process only, as the selection writer."""
    written = write_selection(cfg, reference, images, model_info=model_info, output_dir=output_dir)
    if truth is None:
        truth = ground_truth_of(cfg.IMAGESCORE.UNLABELLED_DATASETS)
    gallery = draw_selection_gallery(
        images,
        gallery_path(written["pseudo_labels"]),
        class_names=labelled_class_names(cfg),
        truth=truth,
        selected_ids=written["selected_ids"],
    )
    logger.info(
        "Wrote %s: the %d highest- and %d lowest-ranked images with their pseudo boxes",
        gallery.path,
        len(gallery.top),
        len(gallery.bottom),
    )
    return dict(written, gallery=gallery.path)
