"""The one recording pass over a dataset: each batch goes through the detector once, with every
recorder that the scoring modes need attached (docs/method.md §2 steps 2-5).

A recorder is anything with a ``recording(inputs)`` context manager that holds its hooks during the
forward pass: :class:`BackboneRecorder` (the backbone's per-image layers, for image mode) and
:class:`~imagescore_det.modeling.box_recording.BoxRecorder` (the box head on given boxes, for box
mode). Each pass uses Detectron2's test loader, ``IMAGESCORE.SCORE_BATCH_SIZE`` images per batch
(the backbone recorder crops each padded activation to its image, so no padding is pooled), with the
model in eval mode under ``torch.inference_mode``; activations live only as long as their batch. In
a multi-process run each process scores its own images and the scored images (summaries, never
activations) are gathered on the main process.
"""

import contextlib
import logging
import time
from datetime import timedelta
from typing import Callable, Dict, List, Optional, Sequence

import torch

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.data import build_detection_test_loader, get_detection_dataset_dicts  # noqa: E402
from detectron2.utils import comm  # noqa: E402
from detectron2.utils.logger import log_every_n_seconds  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

from ..data.folder import UNREADABLE_KEY, SkipUnreadableMapper, is_unreadable  # noqa: E402
from ..structures import ScoredImage  # noqa: E402

__all__ = [
    "BackboneRecorder",
    "unwrap_model",
    "run_recorded",
    "forward_recorded",
    "labelled_loader",
    "unlabelled_records",
    "records_loader",
    "score_batch_size",
    "score_shard_size",
    "gather_scored",
    "check_unique_ids",
]

logger = logging.getLogger(__name__)

#: Seconds between two progress lines of a pass.
PROGRESS_PERIOD_S = 10


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DistributedDataParallel wrapper (scoring runs each rank's copy alone)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


class BackboneRecorder:
    """The recording backbone's per-image layers, each cropped to its image before pooling."""

    def __init__(self, model: torch.nn.Module, grid: int):
        backbone = unwrap_model(model).backbone
        if not hasattr(backbone, "recorder"):
            raise ValueError(
                "the model's backbone %s cannot record activations: set MODEL.BACKBONE.NAME to "
                "build_imagescore_backbone and the real backbone in IMAGESCORE.WRAPPED_BACKBONE"
                % type(backbone).__name__
            )
        self.recorder = backbone.recorder(grid)

    @contextlib.contextmanager
    def recording(self, inputs: Sequence[dict]):
        self.recorder.set_image_sizes([tuple(x["image"].shape[-2:]) for x in inputs])
        with self.recorder:
            yield self

    def pop(self):
        """``{layer: [images, ...]}`` of the last forward pass."""
        return self.recorder.pop()


def run_recorded(
    model,
    data_loader,
    recorders: Sequence,
    handle: Callable,
    *,
    description: str,
    on_unreadable: Optional[Callable] = None,
    after_batch: Optional[Callable] = None,
) -> None:
    """Run ``model`` once per batch of ``data_loader`` with ``recorders`` attached, then
    ``handle(inputs, outputs)``, which reads what the recorders hold.

    Records that ``SkipUnreadableMapper`` marked as unreadable go to ``on_unreadable(record)``
    instead of the model (without it they are an error). ``after_batch(batch)``, if given, then
    sees the whole batch in loader order, unreadable markers included. The model's train/eval mode
    is restored afterwards, even after an error.
    """
    model = unwrap_model(model)
    total, start = len(data_loader), time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for done, batch in enumerate(data_loader, start=1):
                inputs = readable_records(batch, on_unreadable, description)
                if inputs:  # else every image of the batch was unreadable
                    handle(inputs, forward_recorded(model, inputs, recorders))
                if after_batch is not None:
                    after_batch(batch)
                elapsed = time.perf_counter() - start
                eta = timedelta(seconds=int(elapsed / done * (total - done)))
                log_every_n_seconds(
                    logging.INFO,
                    "%s: %d/%d batches, ETA %s" % (description, done, total, eta),
                    n=PROGRESS_PERIOD_S,
                )
    finally:
        model.train(was_training)
    logger.info("%s: %d batches in %.1f s", description, total, time.perf_counter() - start)


def forward_recorded(model, inputs: Sequence[dict], recorders: Sequence):
    """``model(inputs)`` with every recorder of ``recorders`` attached: one forward, which each
    recorder then holds the activations of (the caller sets the model's mode and grad mode)."""
    with contextlib.ExitStack() as attached:
        for recorder in recorders:
            attached.enter_context(recorder.recording(inputs))
        return model(inputs)


def readable_records(batch, on_unreadable: Optional[Callable], description: str) -> list:
    """The batch's readable records; each unreadable marker goes to ``on_unreadable`` (an error without one)."""
    for record in batch:
        if is_unreadable(record):
            if on_unreadable is None:
                raise ValueError(
                    "%s: cannot read %s (%s)"
                    % (description, record["file_name"], record[UNREADABLE_KEY])
                )
            on_unreadable(record)
    return [record for record in batch if not is_unreadable(record)]


def score_batch_size(cfg) -> int:
    """IMAGESCORE.SCORE_BATCH_SIZE, checked: images per batch of the reference and scoring passes."""
    size = cfg.IMAGESCORE.SCORE_BATCH_SIZE
    if not isinstance(size, int) or size < 1:
        raise ValueError("IMAGESCORE.SCORE_BATCH_SIZE must be an integer >= 1, got %r" % (size,))
    return size


def score_shard_size(cfg) -> int:
    """IMAGESCORE.SCORE_SHARD_SIZE, checked: images per shard of the scoring pass (0: no shards)."""
    size = cfg.IMAGESCORE.SCORE_SHARD_SIZE
    if not isinstance(size, int) or size < 0:
        raise ValueError(
            "IMAGESCORE.SCORE_SHARD_SIZE must be an integer >= 0 (0: no shards), got %r" % (size,)
        )
    return size


def labelled_loader(cfg):
    """Detectron2's test loader over IMAGESCORE.LABELLED_DATASETS: the reference pass's images,
    sharded by rank, SCORE_BATCH_SIZE per batch."""
    return build_detection_test_loader(
        cfg, list(cfg.IMAGESCORE.LABELLED_DATASETS), batch_size=score_batch_size(cfg)
    )


def unlabelled_records(cfg) -> List[dict]:
    """Every dataset dict of IMAGESCORE.UNLABELLED_DATASETS in dataset order, as the test loader reads them."""
    return get_detection_dataset_dicts(list(cfg.IMAGESCORE.UNLABELLED_DATASETS), filter_empty=False)


def records_loader(cfg, records: Sequence[dict]):
    """Detectron2's test loader over exactly ``records``, in order, in this process alone (the caller
    chooses each process's records), SCORE_BATCH_SIZE per batch, unreadable images as markers."""
    records = list(records)
    return build_detection_test_loader(
        records,
        mapper=SkipUnreadableMapper(cfg, False),
        sampler=torch.utils.data.SequentialSampler(records),
        batch_size=score_batch_size(cfg),
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )


def gather_scored(
    shard: Dict[int, List[ScoredImage]],
    description: str,
    *,
    reused: Optional[Dict[int, List[ScoredImage]]] = None,
) -> List[ScoredImage]:
    """Every rank's scored chunks (``{chunk: images}``, chunks numbered in dataset order) and the
    ``reused`` ones on the main process, in chunk order (others get []); ids checked, unreadable
    ones reported. Only the records travel, never activations."""
    parts = comm.gather(shard)
    if not comm.is_main_process():
        return []
    chunks = dict(reused or {})
    for part in parts:
        chunks.update(part)
    images = [image for key in sorted(chunks) for image in chunks[key]]
    unreadable = [image.file_name for image in images if image.error]
    logger.info("Scored %d images of %s", len(images) - len(unreadable), description)
    if unreadable:
        logger.warning(
            "Skipped %d unreadable image(s), recorded as not scored: %s",
            len(unreadable),
            ", ".join(unreadable),
        )
    check_unique_ids(images)
    return images


def check_unique_ids(images: Sequence[ScoredImage]) -> None:
    """Selection breaks ties by image id, so ids must name images uniquely across the unlabelled sets."""
    seen = set()
    for image in images:
        if image.image_id in seen:
            raise ValueError(
                "image id %r occurs twice in IMAGESCORE.UNLABELLED_DATASETS (%s)"
                % (image.image_id, image.file_name)
            )
        seen.add(image.image_id)
