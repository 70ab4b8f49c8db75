"""Box mode (``IMAGESCORE.SCORE_MODE: box``): each pseudo box is scored against its class's reference.

Reference pass: the labelled set's ground-truth boxes of class c go through the detector's own box
head (:class:`~imagescore_det.modeling.box_recording.BoxRecorder`) and stream into class c's
:class:`~imagescore_det.scoring.ReferenceBuilder`. Scoring pass: the detector's pseudo boxes go
through the same box head, each box is scored with the core ``Reference.score`` against the
reference of its predicted class, and the image's value aggregates its boxes (:mod:`.box_ranking`).
Both passes ride on :func:`.scoring.run_recorded` (eval mode, inference mode, progress, one image
per batch), so box mode differs from image mode only in what is recorded and scored.
"""
import logging
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np
import torch

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.data import DatasetCatalog, build_detection_test_loader  # noqa: E402
from detectron2.utils import comm  # noqa: E402

from ..data.pseudo_labels import ScoredImage  # noqa: E402
from ..modeling.box_recording import BoxRecorder, to_input_boxes  # noqa: E402
from ..scoring import ClassReferences, ReferenceBuilder  # noqa: E402
from .box_ranking import BOX_AGGREGATES, BOX_RANKINGS, box_ranking_values  # noqa: E402
from .scoring import gather_scored, keep_unreadable, run_recorded, to_scored_image, unlabelled_loader, unwrap_model  # noqa: E402
from .selection import labelled_class_names  # noqa: E402
from .selection_quality import ground_truth_from_dicts  # noqa: E402

__all__ = ["build_box_references", "score_images_by_box", "score_unlabelled_by_box"]

logger = logging.getLogger(__name__)

GroundTruth = Mapping[object, Tuple[np.ndarray, np.ndarray]]


def _rows(acts: Mapping[str, torch.Tensor], rows: np.ndarray) -> Dict[str, torch.Tensor]:
    index = torch.as_tensor(rows, dtype=torch.int64)
    return {name: act.index_select(0, index) for name, act in acts.items()}


def build_box_references(
    model, data_loader, truth: GroundTruth, class_names: Sequence[str], *,
    grid: int, threshold_ratio: float, threshold_stat: str, layers: Sequence[str] = (), description: str,
) -> ClassReferences:
    """One reference per class from the ground-truth boxes ``truth[image_id]`` of the loader's images.

    Every rank returns the same references (builders are gathered and merged in rank order).
    """
    recorder = BoxRecorder(unwrap_model(model), layers)
    builders = {c: ReferenceBuilder(threshold_ratio, threshold_stat, grid=0, model=description) for c in range(len(class_names))}

    def handle(inputs, outputs, acts):
        boxes, classes, ids = [], [], []
        for record, size in zip(inputs, recorder.input_sizes):
            if record["image_id"] not in truth:
                raise ValueError("labelled image %r has no ground-truth record" % (record["image_id"],))
            truth_boxes, truth_classes = truth[record["image_id"]]
            boxes.append(to_input_boxes(truth_boxes, record, size))
            classes.append(np.asarray(truth_classes, dtype=np.int64))
            ids += [record["image_id"]] * len(truth_classes)
        box_acts = recorder.record(boxes)
        if box_acts is None:
            return
        classes = np.concatenate(classes)
        unknown = classes[(classes < 0) | (classes >= len(class_names))]
        if len(unknown):
            raise ValueError("a ground-truth box has class %d, but the labelled set has %d classes" % (unknown[0], len(class_names)))
        for c in np.unique(classes):
            rows = np.flatnonzero(classes == c)
            builders[int(c)].update(_rows(box_acts, rows), [ids[i] for i in rows])

    with recorder.capture():
        run_recorded(model, data_loader, grid=grid, description="Box reference pass", handle=handle)
    if comm.get_world_size() > 1:
        shards = comm.all_gather(builders)
        builders = {c: ReferenceBuilder(threshold_ratio, threshold_stat, grid=0, model=description) for c in builders}
        for shard in shards:  # rank order: every rank holds bit-identical sums
            for c, builder in shard.items():
                builders[c].merge(builder)
    missing = [class_names[c] for c, builder in builders.items() if builder.num_images == 0]
    if missing:
        logger.warning("No labelled ground-truth box of class %s: its detections score below every other box", ", ".join(missing))
    return ClassReferences.from_builders(builders, class_names, mode="box")


def score_images_by_box(
    model, data_loader, references: ClassReferences, *,
    grid: int, formula: str, pseudo_score_thresh: float, aggregate: str, layers: Sequence[str] = (),
    ignore_score_thresh: float = 1.0,
) -> List[ScoredImage]:
    """This rank's images, each pseudo box scored against its class; ``score`` = the aggregate box score."""
    recorder = BoxRecorder(unwrap_model(model), layers)
    images: List[ScoredImage] = []

    def handle(inputs, outputs, acts):
        batch = [
            to_scored_image(record, output, {}, pseudo_score_thresh=pseudo_score_thresh, ignore_score_thresh=ignore_score_thresh)
            for record, output in zip(inputs, outputs)
        ]
        box_acts = recorder.record(
            [to_input_boxes(image.boxes, record, size) for image, record, size in zip(batch, inputs, recorder.input_sizes)]
        )
        if box_acts is not None:
            scores = references.score(box_acts, [c for image in batch for c in image.classes], formula).tolist()
            for image in batch:
                image.box_scores, scores = scores[: len(image.boxes)], scores[len(image.boxes):]
        for image, value in zip(batch, box_ranking_values(batch, "score", aggregate, empty_score=references.lowest_score)):
            image.score = float(value)
        images.extend(batch)

    with recorder.capture():
        run_recorded(model, data_loader, grid=grid, description="Box scoring pass", handle=handle, on_unreadable=keep_unreadable(images))
    return images


def score_unlabelled_by_box(cfg, model, *, description: str) -> Tuple[ClassReferences, List[ScoredImage]]:
    """Box-mode :func:`.scoring.score_unlabelled`: per-class references, then every pseudo box scored.

    On the main process the images' ``score`` becomes what ``IMAGESCORE.BOX.RANKING`` ranks by
    (the rank product needs every image's boxes, so it is taken after the gather).
    """
    settings = cfg.IMAGESCORE
    for key, value, choices in (("AGGREGATE", settings.BOX.AGGREGATE, BOX_AGGREGATES), ("RANKING", settings.BOX.RANKING, BOX_RANKINGS)):
        if value not in choices:  # checked before the passes, not after them
            raise ValueError("IMAGESCORE.BOX.%s must be one of %s, got %r" % (key, choices, value))
    labelled = list(settings.LABELLED_DATASETS)
    truth = ground_truth_from_dicts([record for name in labelled for record in DatasetCatalog.get(name)])
    references = build_box_references(
        model, build_detection_test_loader(cfg, labelled), truth, labelled_class_names(cfg),
        grid=settings.GRID, threshold_ratio=settings.THRESHOLD_RATIO, threshold_stat=settings.THRESHOLD_STAT,
        layers=settings.BOX.LAYERS, description=description,
    )
    logger.info("Built per-class box references from %s: %s", ", ".join(labelled), references.metadata["examples_per_class"])
    shard = score_images_by_box(
        model, unlabelled_loader(cfg), references,
        grid=settings.GRID, formula=settings.FORMULA, pseudo_score_thresh=settings.PSEUDO_SCORE_THRESH,
        aggregate=settings.BOX.AGGREGATE, layers=settings.BOX.LAYERS,
        ignore_score_thresh=settings.PSEUDO_TRAINING.IGNORE_SCORE_THRESH,
    )
    images = gather_scored(shard, "%s (box mode)" % ", ".join(settings.UNLABELLED_DATASETS))
    if comm.is_main_process():
        scored = [image for image in images if not image.error]  # unreadable images keep their NaN score
        values = box_ranking_values(scored, settings.BOX.RANKING, settings.BOX.AGGREGATE, empty_score=references.lowest_score)
        for image, value in zip(scored, values):
            image.score = float(value)
        logger.info("Box mode ranks by %r, aggregate %r", settings.BOX.RANKING, settings.BOX.AGGREGATE)
    return references, images
