"""Score a dataset with a Detectron2 model: a reference pass over the labelled set, then one pass
over the unlabelled set that yields both the image scores and the pseudo labels (docs/method.md §2 steps 2-5).

Each pass uses Detectron2's test loader (one image per batch, so a score never depends on its
batch) with the model in eval mode under ``torch.inference_mode``; activations live only as long
as their batch. In a multi-process run the loader shards images by rank, reference sums are
combined across ranks and the scored images are gathered on the main process.
"""
import logging
import time
from datetime import timedelta
from typing import Callable, List, Optional, Sequence, Tuple

import torch

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.data import build_detection_test_loader  # noqa: E402
from detectron2.utils import comm  # noqa: E402
from detectron2.utils.logger import log_every_n_seconds  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

from ..data.folder import SkipUnreadableMapper, UNREADABLE_KEY, is_unreadable  # noqa: E402
from ..data.pseudo_labels import ScoredImage  # noqa: E402
from ..scoring import Reference, ReferenceBuilder  # noqa: E402

__all__ = [
    "unwrap_model", "run_recorded", "build_reference", "to_scored_image", "score_images", "keep_unreadable",
    "unlabelled_loader", "gather_scored", "score_unlabelled", "check_unique_ids",
]

logger = logging.getLogger(__name__)

#: Seconds between two progress lines of a pass.
PROGRESS_PERIOD_S = 10


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DistributedDataParallel wrapper (scoring runs each rank's copy alone)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def run_recorded(
    model, data_loader, *, grid: int, description: str, handle: Callable, on_unreadable: Optional[Callable] = None
) -> None:
    """Run ``model`` in eval mode over ``data_loader``, calling ``handle(inputs, outputs, acts)`` per batch.

    ``model`` must have a recording backbone (``MODEL.BACKBONE.NAME: build_imagescore_backbone``).
    Records that ``SkipUnreadableMapper`` marked as unreadable go to ``on_unreadable(record)``
    instead of the model (without it they are an error). The model's train/eval mode is restored
    afterwards, even after an error.
    """
    model = unwrap_model(model)
    if not hasattr(model.backbone, "recorder"):
        raise ValueError(
            "the model's backbone %s cannot record activations: set MODEL.BACKBONE.NAME to "
            "build_imagescore_backbone and the real backbone in IMAGESCORE.WRAPPED_BACKBONE" % type(model.backbone).__name__
        )
    recorder = model.backbone.recorder(grid)
    total, start = len(data_loader), time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for done, batch in enumerate(data_loader, start=1):
                inputs = readable_records(batch, on_unreadable, description)
                if not inputs:
                    continue  # every image of the batch was unreadable
                recorder.set_image_sizes([tuple(x["image"].shape[-2:]) for x in inputs])
                with recorder:
                    outputs = model(inputs)
                handle(inputs, outputs, recorder.pop())
                elapsed = time.perf_counter() - start
                eta = timedelta(seconds=int(elapsed / done * (total - done)))
                log_every_n_seconds(logging.INFO, "%s: %d/%d batches, ETA %s" % (description, done, total, eta), n=PROGRESS_PERIOD_S)
    finally:
        model.train(was_training)
    logger.info("%s: %d batches in %.1f s", description, total, time.perf_counter() - start)


def readable_records(batch, on_unreadable: Optional[Callable], description: str) -> list:
    """The batch's readable records; each unreadable marker goes to ``on_unreadable`` (an error without one)."""
    for record in batch:
        if is_unreadable(record):
            if on_unreadable is None:
                raise ValueError("%s: cannot read %s (%s)" % (description, record["file_name"], record[UNREADABLE_KEY]))
            on_unreadable(record)
    return [record for record in batch if not is_unreadable(record)]


def build_reference(model, data_loader, *, grid: int, threshold_ratio: float, threshold_stat: str, description: str) -> Reference:
    """Stream the labelled set into one :class:`Reference`; every rank returns the same one."""
    builder = ReferenceBuilder(threshold_ratio, threshold_stat, grid=grid, model=description)
    run_recorded(
        model, data_loader, grid=grid, description="Reference pass",
        handle=lambda inputs, outputs, acts: builder.update(acts, [x["image_id"] for x in inputs]),
    )
    if comm.get_world_size() > 1:
        builder.all_reduce()  # merged in rank order: every rank holds bit-identical sums
    return builder.finalize()


def to_scored_image(record, output, terms, *, pseudo_score_thresh: float, ignore_score_thresh: float = 1.0) -> ScoredImage:
    """One image's record: score = the sum of ``terms``, pseudo labels = detections at >= the threshold,
    ignore boxes = detections with confidence in [ignore_score_thresh, pseudo_score_thresh)."""
    instances = output["instances"].to("cpu")
    keep = instances.scores >= pseudo_score_thresh
    ignore = (instances.scores >= ignore_score_thresh) & ~keep
    return ScoredImage(
        image_id=record["image_id"],
        file_name=record["file_name"],
        height=int(record["height"]),
        width=int(record["width"]),
        score=float(sum(terms.values())),
        terms=terms,
        confidence=float(instances.scores.mean()) if len(instances) else 0.0,
        boxes=instances.pred_boxes.tensor[keep].tolist(),
        classes=instances.pred_classes[keep].tolist(),
        scores=instances.scores[keep].tolist(),
        ignore_boxes=instances.pred_boxes.tensor[ignore].tolist(),
    )


def score_images(
    model, data_loader, reference: Reference, *, grid: int, formula: str, pseudo_score_thresh: float,
    ignore_score_thresh: float = 1.0,
) -> List[ScoredImage]:
    """This rank's images with their score, per-layer terms, mean confidence and pseudo labels; detections
    with confidence in [ignore_score_thresh, pseudo_score_thresh) become ignore boxes (docs/method.md §2 item 8).

    An image the loader's mapper could not read is kept, in its place, as ``ScoredImage.unreadable``.
    """
    images: List[ScoredImage] = []

    def handle(inputs, outputs, acts):
        ids = [x["image_id"] for x in inputs]
        terms = reference.layer_terms(acts, formula, ids)
        for row, (record, output) in enumerate(zip(inputs, outputs)):
            image_terms = {layer: float(term[row]) for layer, term in terms.items()}
            images.append(to_scored_image(
                record, output, image_terms, pseudo_score_thresh=pseudo_score_thresh, ignore_score_thresh=ignore_score_thresh
            ))

    run_recorded(model, data_loader, grid=grid, description="Scoring pass", handle=handle, on_unreadable=keep_unreadable(images))
    return images


def keep_unreadable(images: List[ScoredImage]) -> Callable:
    """An ``on_unreadable`` callback that keeps each unreadable image in ``images``, in its place."""
    return lambda record: images.append(ScoredImage.unreadable(record["image_id"], record["file_name"], record[UNREADABLE_KEY]))


def unlabelled_loader(cfg):
    """Detectron2's test loader over IMAGESCORE.UNLABELLED_DATASETS; an image that cannot be read becomes
    a marker record (SkipUnreadableMapper) rather than ending an hour-long pass."""
    return build_detection_test_loader(cfg, list(cfg.IMAGESCORE.UNLABELLED_DATASETS), mapper=SkipUnreadableMapper(cfg, False))


def gather_scored(shard: List[ScoredImage], description: str) -> List[ScoredImage]:
    """Every rank's scored images on the main process (others get []), ids checked, unreadable ones reported."""
    images = [image for part in comm.gather(shard) for image in part]
    if comm.is_main_process():
        unreadable = [image.file_name for image in images if image.error]
        logger.info("Scored %d images of %s", len(images) - len(unreadable), description)
        if unreadable:
            logger.warning("Skipped %d unreadable image(s), recorded as not scored: %s", len(unreadable), ", ".join(unreadable))
        check_unique_ids(images)
    return images


def score_unlabelled(cfg, model, *, description: str) -> Tuple[Reference, List[ScoredImage]]:
    """Reference from ``IMAGESCORE.LABELLED_DATASETS``, then score ``IMAGESCORE.UNLABELLED_DATASETS``.

    ``IMAGESCORE.SCORE_MODE`` "image" scores whole images against one reference (the paper);
    "box" scores each pseudo box against its class's reference (:mod:`.box_scoring`), whose
    :class:`~imagescore_det.scoring.ClassReferences` takes the reference's place.

    Returns the reference and, on the main process, every scored image in dataset order
    (other ranks get an empty list). ``description`` names the model in the reference.
    """
    settings = cfg.IMAGESCORE
    if settings.SCORE_MODE == "box":
        from .box_scoring import score_unlabelled_by_box  # it builds on this module's passes

        return score_unlabelled_by_box(cfg, model, description=description)
    if settings.SCORE_MODE != "image":
        raise ValueError("IMAGESCORE.SCORE_MODE must be 'image' or 'box', got %r" % (settings.SCORE_MODE,))
    reference = build_reference(
        model,
        build_detection_test_loader(cfg, list(settings.LABELLED_DATASETS)),
        grid=settings.GRID,
        threshold_ratio=settings.THRESHOLD_RATIO,
        threshold_stat=settings.THRESHOLD_STAT,
        description=description,
    )
    logger.info("Built the reference from %d images of %s", reference.metadata["num_images"], ", ".join(settings.LABELLED_DATASETS))
    shard = score_images(
        model,
        unlabelled_loader(cfg),
        reference,
        grid=settings.GRID,
        formula=settings.FORMULA,
        pseudo_score_thresh=settings.PSEUDO_SCORE_THRESH,
        ignore_score_thresh=settings.PSEUDO_TRAINING.IGNORE_SCORE_THRESH,
    )
    images = gather_scored(shard, "%s (formula %r)" % (", ".join(settings.UNLABELLED_DATASETS), settings.FORMULA))
    return reference, images


def check_unique_ids(images: Sequence[ScoredImage]) -> None:
    """Selection breaks ties by image id, so ids must name images uniquely across the unlabelled sets."""
    seen = set()
    for image in images:
        if image.image_id in seen:
            raise ValueError("image id %r occurs twice in IMAGESCORE.UNLABELLED_DATASETS (%s)" % (image.image_id, image.file_name))
        seen.add(image.image_id)
