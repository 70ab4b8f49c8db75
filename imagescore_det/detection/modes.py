"""Scoring modes, and :func:`score_unlabelled`, which runs any set of them in two passes.

A mode says what its reference is built from and what an unlabelled image is scored by:

- ``image`` (the paper): one reference from the backbone's per-image layers over the labelled
  images; each unlabelled image is scored against it (``ScoredImage.image_score``).
- ``box``: one reference per class from the box head's activations on the labelled set's
  ground-truth boxes; each pseudo box is scored against its class (``ScoredImage.box_scores``),
  and the image ranks by their aggregate (:mod:`.ranking`).

:data:`MODES` maps ``IMAGESCORE.SCORE_MODE`` to its class, so a new mode is one entry. However
many modes run, the labelled set goes through the detector once (the reference pass) and the
unlabelled set once (the scoring pass), every mode's recorder attached to the same forward.
"""

import logging
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.utils import comm  # noqa: E402

from ..data.folder import UNREADABLE_KEY, warn_unreadable  # noqa: E402
from ..data.ground_truth import ground_truth_of  # noqa: E402
from ..modeling.box_recording import BoxRecorder, to_input_boxes  # noqa: E402
from ..scoring import ClassReferences, ReferenceBuilder, all_reduce_builders  # noqa: E402
from ..structures import ScoredImage  # noqa: E402
from .passes import (  # noqa: E402
    BackboneRecorder,
    gather_scored,
    labelled_loader,
    records_loader,
    run_recorded,
    score_shard_size,
    unlabelled_records,
    unwrap_model,
)
from .ranking import BOX_AGGREGATES, BOX_RANKINGS, box_ranking_values  # noqa: E402
from .selection import labelled_class_names  # noqa: E402
from .shards import (  # noqa: E402
    ShardError,
    ShardStore,
    describe_reuse,
    reference_digest,
    state_dict_sha256,
)

__all__ = [
    "MODES",
    "check_box_settings",
    "ImageMode",
    "BoxMode",
    "to_scored_image",
    "build_references",
    "score_truth_boxes",
    "score_images",
    "scoring_fingerprint",
    "shard_folder",
    "score_unlabelled",
]

logger = logging.getLogger(__name__)


def merged(builders: Dict[object, ReferenceBuilder]) -> Dict[object, ReferenceBuilder]:
    """``builders`` summed over every process (every mode merges this way); as they are in one process."""
    return all_reduce_builders(builders) if comm.get_world_size() > 1 else builders


class ImageMode:
    """The paper's mode: one reference of whole labelled images, each unlabelled image scored against it."""

    name = "image"
    needs_labelled_truth = False

    def __init__(self, cfg, model, description: str):
        self.settings = cfg.IMAGESCORE
        self.recorder = BackboneRecorder(model, self.settings.GRID)
        self.builder = ReferenceBuilder(
            self.settings.THRESHOLD_RATIO,
            self.settings.THRESHOLD_STAT,
            grid=self.settings.GRID,
            model=description,
        )

    def add_to_reference(self, inputs: Sequence[dict], truth) -> None:
        self.builder.update(self.recorder.pop(), [x["image_id"] for x in inputs])

    def finish_reference(self):
        builder = merged({0: self.builder})[0]
        reference = builder.finalize()
        logger.info(
            "Built the reference from %d images of %s",
            reference.metadata["num_images"],
            ", ".join(self.settings.LABELLED_DATASETS),
        )
        return reference

    def score(self, reference, inputs: Sequence[dict], images: Sequence[ScoredImage]) -> None:
        terms = reference.layer_terms(
            self.recorder.pop(), self.settings.FORMULA, [x["image_id"] for x in inputs]
        )
        for row, image in enumerate(images):
            image.terms = {layer: float(term[row]) for layer, term in terms.items()}
            image.image_score = float(sum(image.terms.values()))

    def ranking_values(self, reference, images: Sequence[ScoredImage]) -> np.ndarray:
        return np.asarray([image.image_score for image in images], dtype=np.float64)


def check_box_settings(box) -> None:
    """``IMAGESCORE.BOX.AGGREGATE`` and ``RANKING`` must name what :mod:`.ranking` computes."""
    for key, value, choices in (
        ("AGGREGATE", box.AGGREGATE, BOX_AGGREGATES),
        ("RANKING", box.RANKING, BOX_RANKINGS),
    ):
        if value not in choices:
            raise ValueError(
                "IMAGESCORE.BOX.%s is %r; choose one of %s"
                % (key, value, ", ".join(map(repr, choices)))
            )


class BoxMode:
    """Each pseudo box against the reference of its class, built from the labelled set's ground-truth boxes."""

    name = "box"
    needs_labelled_truth = True

    def __init__(self, cfg, model, description: str):
        self.settings = settings = cfg.IMAGESCORE
        check_box_settings(settings.BOX)  # before the passes, not after them
        self.recorder = BoxRecorder(unwrap_model(model), settings.BOX.LAYERS)
        self.class_names = labelled_class_names(cfg)
        self.builders = {
            c: ReferenceBuilder(
                settings.THRESHOLD_RATIO, settings.THRESHOLD_STAT, grid=0, model=description
            )
            for c in range(len(self.class_names))
        }

    def record_truth(self, inputs: Sequence[dict], truth):
        """The box activations of the batch's ground-truth boxes, their classes and image ids
        (activations None where the batch has no box)."""
        boxes, classes, ids = [], [], []
        for record, size in zip(inputs, self.recorder.input_sizes):
            if record["image_id"] not in truth:
                raise ValueError(
                    "labelled image %r has no ground-truth record" % (record["image_id"],)
                )
            truth_boxes, truth_classes = truth[record["image_id"]]
            boxes.append(to_input_boxes(truth_boxes, record, size))
            classes.append(np.asarray(truth_classes, dtype=np.int64))
            ids += [record["image_id"]] * len(truth_classes)
        box_acts = self.recorder.record(boxes)
        classes = np.concatenate(classes)
        unknown = classes[(classes < 0) | (classes >= len(self.class_names))]
        if len(unknown):
            raise ValueError(
                "a ground-truth box has class %d, but the labelled set has %d classes"
                % (unknown[0], len(self.class_names))
            )
        return box_acts, classes, ids

    def add_to_reference(self, inputs: Sequence[dict], truth) -> None:
        box_acts, classes, ids = self.record_truth(inputs, truth)
        if box_acts is None:
            return
        for c in np.unique(classes):
            rows = np.flatnonzero(classes == c)
            index = torch.as_tensor(rows, dtype=torch.int64)
            self.builders[int(c)].update(
                {name: act.index_select(0, index) for name, act in box_acts.items()},
                [ids[i] for i in rows],
            )

    def finish_reference(self) -> ClassReferences:
        builders = merged(self.builders)
        missing = [
            self.class_names[c] for c, builder in builders.items() if builder.num_images == 0
        ]
        if missing:
            logger.warning(
                "No labelled ground-truth box of class %s: its detections score below every other box",
                ", ".join(missing),
            )
        references = ClassReferences.from_builders(builders, self.class_names, mode="box")
        logger.info(
            "Built per-class box references from %s: %s",
            ", ".join(self.settings.LABELLED_DATASETS),
            references.metadata["examples_per_class"],
        )
        return references

    def score_truth(
        self, references: ClassReferences, inputs: Sequence[dict], truth
    ) -> Tuple[List[float], List[int]]:
        """The batch's ground-truth boxes scored against their classes' references, and their classes."""
        box_acts, classes, _ = self.record_truth(inputs, truth)
        if box_acts is None:
            return [], []
        classes = classes.tolist()
        return references.score(box_acts, classes, self.settings.FORMULA).tolist(), classes

    def score(
        self, references: ClassReferences, inputs: Sequence[dict], images: Sequence[ScoredImage]
    ) -> None:
        sizes = self.recorder.input_sizes
        box_acts = self.recorder.record(
            [
                to_input_boxes(image.boxes, record, size)
                for image, record, size in zip(images, inputs, sizes)
            ]
        )
        if box_acts is None:
            return
        scores = references.score(
            box_acts, [c for image in images for c in image.classes], self.settings.FORMULA
        )
        scores = scores.tolist()
        for image in images:
            image.box_scores, scores = scores[: len(image.boxes)], scores[len(image.boxes) :]

    def ranking_values(
        self, references: ClassReferences, images: Sequence[ScoredImage]
    ) -> np.ndarray:
        """By ``IMAGESCORE.BOX.RANKING`` (the rank product needs every image's boxes: call after the gather)."""
        box = self.settings.BOX
        return box_ranking_values(
            images, box.RANKING, box.AGGREGATE, empty_score=references.lowest_score
        )


#: ``IMAGESCORE.SCORE_MODE`` -> its mode.
MODES = {mode.name: mode for mode in (ImageMode, BoxMode)}


def to_scored_image(
    record, output, *, pseudo_score_thresh: float, ignore_score_thresh: float = 1.0
) -> ScoredImage:
    """One image's detections: pseudo labels at >= ``pseudo_score_thresh``, ignore boxes with confidence
    in [ignore_score_thresh, pseudo_score_thresh) (docs/method.md §2 item 8); no scores yet."""
    instances = output["instances"].to("cpu")
    keep = instances.scores >= pseudo_score_thresh
    ignore = (instances.scores >= ignore_score_thresh) & ~keep
    return ScoredImage(
        image_id=record["image_id"],
        file_name=record["file_name"],
        height=int(record["height"]),
        width=int(record["width"]),
        boxes=instances.pred_boxes.tensor[keep].tolist(),
        classes=instances.pred_classes[keep].tolist(),
        confidences=instances.scores[keep].tolist(),
        mean_confidence=float(instances.scores.mean()) if len(instances) else 0.0,
        ignore_boxes=instances.pred_boxes.tensor[ignore].tolist(),
        kind=record.get("kind", ""),
    )


def build_references(model, data_loader, scorers: Sequence, *, truth=None) -> Dict[str, object]:
    """One pass over the labelled ``data_loader`` that builds the reference of every mode in ``scorers``
    (``truth``: the labelled set's ground truth, which box mode needs); every rank returns the same."""

    def add(inputs, outputs):
        for scorer in scorers:
            scorer.add_to_reference(inputs, truth)

    run_recorded(
        model,
        data_loader,
        [scorer.recorder for scorer in scorers],
        add,
        description="Reference pass",
    )
    return {scorer.name: scorer.finish_reference() for scorer in scorers}


def score_truth_boxes(
    model, data_loader, scorer: BoxMode, references: ClassReferences, *, truth
) -> Tuple[np.ndarray, np.ndarray]:
    """One more pass over the labelled ``data_loader``: every ground-truth box scored against its
    class's reference (float64) and its class (int64), every process's boxes on every process. A
    pass of its own, since each box is scored against the finished reference; IMAGESCORE.SELECTION
    "box_filter" and the mean teacher's box gate calibrate their thresholds on these scores."""
    scored: List[Tuple[float, int]] = []

    def add(inputs, outputs):
        scored.extend(zip(*scorer.score_truth(references, inputs, truth)))

    run_recorded(model, data_loader, [scorer.recorder], add, description="Labelled box-score pass")
    parts = comm.all_gather(scored) if comm.get_world_size() > 1 else [scored]
    pairs = [pair for part in parts for pair in part]
    return (
        np.asarray([score for score, _ in pairs], dtype=np.float64),
        np.asarray([c for _, c in pairs], dtype=np.int64),
    )


def score_images(
    model,
    data_loader,
    scorers: Sequence,
    references: Dict[str, object],
    *,
    pseudo_score_thresh: float,
    ignore_score_thresh: float = 1.0,
    keep: Optional[Callable] = None,
) -> List[ScoredImage]:
    """One pass over ``data_loader``: its images with their pseudo labels and every mode's scores.

    An image the loader's mapper could not read is named in a warning and kept, in its place, as
    ``ScoredImage.unreadable``.
    Each image goes to ``keep(record, image)`` in loader order as soon as its batch is scored (then
    nothing is returned); without ``keep`` the images are returned in a list.
    """
    images: List[ScoredImage] = []
    keep = keep if keep is not None else (lambda record, image: images.append(image))
    made = {}  # id(record) -> its image, for the batch in flight

    def score(inputs, outputs):
        batch = [
            to_scored_image(
                record,
                output,
                pseudo_score_thresh=pseudo_score_thresh,
                ignore_score_thresh=ignore_score_thresh,
            )
            for record, output in zip(inputs, outputs)
        ]
        for scorer in scorers:
            scorer.score(references[scorer.name], inputs, batch)
        made.update((id(record), image) for record, image in zip(inputs, batch))

    def keep_unreadable(record):
        warn_unreadable(record)
        made[id(record)] = ScoredImage.unreadable(
            record["image_id"], record["file_name"], record[UNREADABLE_KEY]
        )

    def emit(batch):
        for record in batch:
            keep(record, made.pop(id(record)))

    recorders = [scorer.recorder for scorer in scorers]
    run_recorded(
        model,
        data_loader,
        recorders,
        score,
        description="Scoring pass",
        on_unreadable=keep_unreadable,
        after_batch=emit,
    )
    return images


def scoring_fingerprint(cfg, model, names: Sequence[str], references: Dict[str, object]) -> dict:
    """What the scoring pass's records depend on (module :mod:`.shards`): the scoring config, the
    model's weights as loaded, the references, the modes and the unlabelled datasets' names."""
    config = {key: to_plain(cfg[key]) for key in ("MODEL", "INPUT")}
    config["MODEL"].pop("WEIGHTS")  # the weights are identified by their content below
    config["TEST.DETECTIONS_PER_IMAGE"] = cfg.TEST.DETECTIONS_PER_IMAGE
    config["IMAGESCORE"] = {
        key: value
        for key, value in to_plain(cfg.IMAGESCORE).items()
        if key not in RECORD_INDEPENDENT_KEYS
    }
    config["IMAGESCORE"]["PSEUDO_TRAINING"] = {
        "IGNORE_SCORE_THRESH": cfg.IMAGESCORE.PSEUDO_TRAINING.IGNORE_SCORE_THRESH
    }
    return {
        "config": config,
        "modes": list(names),
        "weights_sha256": state_dict_sha256(unwrap_model(model)),
        "references_sha256": {name: reference_digest(ref) for name, ref in references.items()},
        "datasets": list(cfg.IMAGESCORE.UNLABELLED_DATASETS),
    }


#: IMAGESCORE keys that no per-image record depends on (selection, outputs, schedule, shards'
#: folder); PSEUDO_TRAINING counts only by IGNORE_SCORE_THRESH. SCORE_BATCH_SIZE stays in: float32
#: convolutions of padded batches differ from single images in the last bits (docs/performance.md,
#: "Batches and shards").
RECORD_INDEPENDENT_KEYS = (
    "SELECTION",
    "SELECT_FRACTION",
    "KEEP_EMPTY",
    "REFERENCE_FILE",
    "PSEUDO_LABEL_FILE",
    "SCORES_FILE",
    "PSEUDO_DATASET_NAME",
    "REGIME",
    "SWAP_ITER",
    "UPDATE_PERIOD",
    "SCORE_SHARD_DIR",
    "SYNTHETIC",
    "REGISTER_DATASETS",
)


def to_plain(node):
    """A CfgNode (or value) as JSON-able dicts, lists and scalars."""
    if isinstance(node, dict):
        return {key: to_plain(value) for key, value in node.items()}
    if isinstance(node, (list, tuple)):
        return [to_plain(value) for value in node]
    return node


def shard_folder(cfg, output_dir: Optional[str] = None) -> str:
    """IMAGESCORE.SCORE_SHARD_DIR, a relative one inside ``output_dir`` (default OUTPUT_DIR)."""
    folder = cfg.IMAGESCORE.SCORE_SHARD_DIR
    return folder if os.path.isabs(folder) else os.path.join(output_dir or cfg.OUTPUT_DIR, folder)


def score_unlabelled(
    cfg,
    model,
    *,
    description: str,
    modes: Sequence[str] = (),
    shard_dir: Optional[str] = None,
) -> Tuple[Dict[str, object], List[ScoredImage]]:
    """References from ``IMAGESCORE.LABELLED_DATASETS``, then ``IMAGESCORE.UNLABELLED_DATASETS`` scored.

    ``IMAGESCORE.SCORE_MODE`` always runs and sets each image's ``ranking_value``; ``modes`` adds
    others, in the same two passes. Returns ``{mode: reference}`` (a ``Reference`` for image mode,
    ``ClassReferences`` for box mode) and, on the main process, every scored image in dataset order
    (other ranks get an empty list). ``description`` names the model in the references.

    With ``IMAGESCORE.SCORE_SHARD_SIZE`` > 0 the records are written in shards to ``shard_dir``
    (default: :func:`shard_folder`), and finished shards found there are reused, not scored again
    (:mod:`.shards`); the folder must be shared by every process. With IMAGESCORE.SELECTION
    "box_filter" the box references get the labelled set's ground-truth box scores
    (:func:`score_truth_boxes`, one more labelled pass).
    """
    settings = cfg.IMAGESCORE
    names = [settings.SCORE_MODE] + [name for name in modes if name != settings.SCORE_MODE]
    unknown = [name for name in names if name not in MODES]
    if unknown:
        raise ValueError(
            "IMAGESCORE.SCORE_MODE must be one of %s, got %r" % (sorted(MODES), unknown[0])
        )
    shard_size = score_shard_size(cfg)
    scorers = [MODES[name](cfg, model, description) for name in names]
    truth = (
        ground_truth_of(settings.LABELLED_DATASETS)
        if any(s.needs_labelled_truth for s in scorers)
        else None
    )
    references = build_references(model, labelled_loader(cfg), scorers, truth=truth)
    if settings.SELECTION == "box_filter" and "box" in references:
        box = next(scorer for scorer in scorers if scorer.name == "box")
        references["box"].truth_scores = torch.as_tensor(
            score_truth_boxes(model, labelled_loader(cfg), box, references["box"], truth=truth)[0]
        )
    records = unlabelled_records(cfg)
    store, reused, chunks = None, {}, {comm.get_rank(): rank_bounds(len(records))}
    if shard_size > 0:
        store = ShardStore(
            shard_dir or shard_folder(cfg),
            scoring_fingerprint(cfg, model, names, references),
            [(record["image_id"], record["file_name"]) for record in records],
            shard_size,
        )
        reused = finished_shards(store)
        todo = [k for k in range(store.num_shards) if k not in reused]
        chunks = {k: store.bounds(k) for k in todo[comm.get_rank() :: comm.get_world_size()]}
    scored = score_chunks(cfg, model, scorers, references, records, chunks, store)
    images = gather_scored(
        scored,
        "%s (modes %s, formula %r)"
        % (", ".join(settings.UNLABELLED_DATASETS), names, settings.FORMULA),
        reused=reused,
    )
    if comm.is_main_process():
        scored = [
            image for image in images if not image.error
        ]  # unreadable images keep their NaN value
        for image, value in zip(
            scored, scorers[0].ranking_values(references[scorers[0].name], scored)
        ):
            image.ranking_value = float(value)
    return references, images


def rank_bounds(total: int) -> Tuple[int, int]:
    """This process's ``[start, stop)`` of ``total`` images, as Detectron2's InferenceSampler splits them."""
    world, rank = comm.get_world_size(), comm.get_rank()
    sizes = [total // world + int(r < total % world) for r in range(world)]
    start = sum(sizes[:rank])
    return start, start + sizes[rank]


def finished_shards(store: ShardStore) -> Dict[int, List[ScoredImage]]:
    """The main process checks and reads the finished shards (others get {}); every process learns
    which they are, or raises the main process's ShardError."""
    reused, error = {}, None
    if comm.is_main_process():
        try:
            reused = store.finished()
        except ShardError as refused:
            error = str(refused)
        if not error and reused:
            logger.info(describe_reuse(store, reused))
        elif not error:
            logger.info(
                "Scoring %d images in %d shard(s) of %d, written to %s as they finish",
                len(store.images),
                store.num_shards,
                store.shard_size,
                store.directory,
            )
    done, error = comm.all_gather((sorted(reused), error))[0]
    if error:
        raise ShardError(error)
    return reused if comm.is_main_process() else dict.fromkeys(done, [])


def score_chunks(
    cfg, model, scorers, references, records, chunks: Dict[int, Tuple[int, int]], store
) -> Dict[int, List[ScoredImage]]:
    """Score ``records[start:stop]`` of every chunk in one pass, in order; with a ``store`` each chunk
    is written as its shard the moment its last image is scored. Returns ``{chunk: images}``."""
    queue = [(key, start, stop) for key, (start, stop) in sorted(chunks.items())]
    scored: Dict[int, List[ScoredImage]] = {key: [] for key, _, _ in queue}
    position = iter([(key, i) for key, start, stop in queue for i in range(start, stop)])

    def keep(record, image):
        key, index = next(position)
        expected = records[index]
        if (image.image_id, image.file_name) != (expected["image_id"], expected["file_name"]):
            raise RuntimeError(
                "the scoring loader returned %s where %s was due" % (image.file_name, expected)
            )
        scored[key].append(image)
        start, stop = chunks[key]
        if store is not None and len(scored[key]) == stop - start:
            store.write(key, scored[key])

    own = [records[i] for _, start, stop in queue for i in range(start, stop)]
    if own:
        score_images(
            model,
            records_loader(cfg, own),
            scorers,
            references,
            pseudo_score_thresh=cfg.IMAGESCORE.PSEUDO_SCORE_THRESH,
            ignore_score_thresh=cfg.IMAGESCORE.PSEUDO_TRAINING.IGNORE_SCORE_THRESH,
            keep=keep,
        )
    return scored
