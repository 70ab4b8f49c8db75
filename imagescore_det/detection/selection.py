"""Keep the best images and write what a swap produces (docs/method.md §2 steps 4-6).

One function serves the training hook and ``tools/score_voc.py``: it keeps the top
``IMAGESCORE.SELECT_FRACTION`` of the scored images by the ``IMAGESCORE.SELECTION`` strategy (the
image score by default; ceil of the fraction, ties by image id), and writes the reference, the
pseudo-label JSON, the per-image CSV and the score histogram, each atomically. In a set whose images
have kinds (an uncurated pool) it also counts the distractors the selection kept. The image
strategies differ only in which images they keep; every kept image is pseudo-labelled the same way.
"box_filter" keeps every image, as "all", and filters its pseudo boxes by box score
(:func:`.ranking.filter_boxes`). Call it on the main process only.
"""

import datetime
import logging
import math
import os
from typing import Dict, Mapping, Optional, Sequence

import numpy as np

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.data import MetadataCatalog  # noqa: E402

from ..data.pseudo_labels import build_pseudo_label_json, score_table, write_csv, write_json  # noqa: E402
from ..data.synthetic import CLEAN_KIND  # noqa: E402
from ..reports.detection import plot_score_histogram  # noqa: E402
from ..scoring import count_to_keep, rank_by_score, select_top_fraction  # noqa: E402
from ..structures import ScoredImage  # noqa: E402
from .ranking import box_filter_threshold, filter_boxes  # noqa: E402

__all__ = [
    "IMAGE_STRATEGIES",
    "STRATEGIES",
    "EVERY_IMAGE",
    "select_by_strategy",
    "distractors_kept",
    "selection_seed",
    "output_paths",
    "labelled_class_names",
    "labelled_category_ids",
    "apply_box_filter",
    "write_selection",
]

logger = logging.getLogger(__name__)

#: The strategies that keep whole images, each by one value per image.
IMAGE_STRATEGIES = ("image_score", "confidence", "random", "all")
#: The values of IMAGESCORE.SELECTION: the image strategies, and "box_filter" (every image, each
#: pseudo box kept only where its box score clears IMAGESCORE.BOX.FILTER_QUANTILE of the labelled
#: set's ground-truth box scores, the others made ignore boxes; needs SCORE_MODE "box").
STRATEGIES = IMAGE_STRATEGIES + ("box_filter",)
#: The strategies that keep every image, whatever IMAGESCORE.SELECT_FRACTION.
EVERY_IMAGE = ("all", "box_filter")


def select_by_strategy(
    images: Sequence[ScoredImage], strategy: str, fraction: float, *, seed: int = 0
) -> np.ndarray:
    """Indices of the images a strategy keeps: ``count_to_keep(fraction, N)`` of them, best first.

    "image_score" ranks by the scoring mode's ``ranking_value`` (the image score in image mode, the
    aggregate box value in box mode) and "confidence" by the mean detection confidence (higher is
    better, ties by image id); "random" draws without replacement with
    ``numpy.random.default_rng(seed)``; "all" and "box_filter" keep every image (ordered by ranking
    value) whatever the fraction.
    """
    ids = [image.image_id for image in images]
    if strategy == "image_score":
        return select_top_fraction([image.ranking_value for image in images], ids, fraction)
    if strategy == "confidence":
        return select_top_fraction([image.mean_confidence for image in images], ids, fraction)
    if strategy == "random":
        order = np.random.default_rng(seed).permutation(len(images))
        return order[: count_to_keep(fraction, len(images))]
    if strategy in EVERY_IMAGE:
        return rank_by_score([image.ranking_value for image in images], ids)
    raise ValueError("unknown selection strategy %r; choose one of %s" % (strategy, STRATEGIES))


def distractors_kept(images: Sequence[ScoredImage], indices: Sequence[int]) -> Dict[str, object]:
    """What a selection (``indices`` into ``images``) kept of a set with kinds; {} for a set without.

    ``distractors_kept``: the share of the kept images that are distractors (kind other than
    "clean"; NaN when nothing is kept); ``kept_<kind>``: how many of each distractor kind in the set
    it kept (0 included), kinds in alphabetical order.
    """
    if not any(image.kind for image in images):
        return {}
    kinds = sorted({image.kind for image in images if image.kind != CLEAN_KIND})
    kept = [images[index].kind for index in indices]
    counts = {"kept_%s" % kind: kept.count(kind) for kind in kinds}
    share = sum(counts.values()) / len(kept) if kept else math.nan
    return {"distractors_kept": share, **counts}


def selection_seed(cfg) -> int:
    """The seed of the "random" selection: cfg.SEED, which must then be fixed (>= 0) so that the draw is reproducible."""
    if cfg.IMAGESCORE.SELECTION not in STRATEGIES:
        raise ValueError(
            "IMAGESCORE.SELECTION is %r; choose one of %s" % (cfg.IMAGESCORE.SELECTION, STRATEGIES)
        )
    if cfg.IMAGESCORE.SELECTION == "random" and cfg.SEED < 0:
        raise ValueError(
            "IMAGESCORE.SELECTION 'random' draws with cfg.SEED, which is %d: set SEED >= 0"
            % cfg.SEED
        )
    return max(cfg.SEED, 0)


def output_paths(cfg, output_dir: Optional[str] = None) -> Dict[str, str]:
    """Where a swap writes: the IMAGESCORE.*_FILE settings, relative ones inside ``output_dir``
    (default ``cfg.OUTPUT_DIR``); the histogram goes beside the CSV."""
    root = output_dir or cfg.OUTPUT_DIR

    def resolve(path: str) -> str:
        return path if os.path.isabs(path) else os.path.join(root, path)

    scores = resolve(cfg.IMAGESCORE.SCORES_FILE)
    return {
        "reference": resolve(cfg.IMAGESCORE.REFERENCE_FILE),
        "pseudo_labels": resolve(cfg.IMAGESCORE.PSEUDO_LABEL_FILE),
        "scores": scores,
        "histogram": os.path.splitext(scores)[0] + "_histogram.png",
    }


def labelled_class_names(cfg) -> Sequence[str]:
    """Class names of the labelled set, in contiguous-id order: the pseudo labels' categories 1..K."""
    return MetadataCatalog.get(cfg.IMAGESCORE.LABELLED_DATASETS[0]).thing_classes


def labelled_category_ids(cfg) -> Sequence[int]:
    """The pseudo labels' category ids, in contiguous-id order: a COCO-format labelled set's own, else 1..K."""
    mapping = MetadataCatalog.get(cfg.IMAGESCORE.LABELLED_DATASETS[0]).get(
        "thing_dataset_id_to_contiguous_id"
    )
    if not mapping:
        return list(range(1, len(labelled_class_names(cfg)) + 1))
    return [dataset_id for dataset_id, _ in sorted(mapping.items(), key=lambda item: item[1])]


def apply_box_filter(cfg, reference, images: Sequence[ScoredImage]):
    """The box filter of IMAGESCORE.SELECTION "box_filter" on the kept ``images``: their copies with
    the failing pseudo boxes made ignore boxes, and what the pseudo-label file's info records of it.

    The threshold is the IMAGESCORE.BOX.FILTER_QUANTILE of ``reference.truth_scores``, the labelled
    set's ground-truth boxes scored against their classes' references (:func:`..modes.score_unlabelled`
    adds them to the box references when SELECTION is "box_filter").
    """
    truth_scores = getattr(reference, "truth_scores", None)
    if truth_scores is None:
        raise ValueError(
            "IMAGESCORE.SELECTION 'box_filter' needs box references that carry the labelled set's "
            "ground-truth box scores: set IMAGESCORE.SCORE_MODE box"
        )
    quantile = cfg.IMAGESCORE.BOX.FILTER_QUANTILE
    threshold = box_filter_threshold(truth_scores, quantile)
    filtered = filter_boxes(images, threshold)
    boxes = sum(len(image.boxes) for image in images)
    kept = sum(len(image.boxes) for image in filtered)
    return filtered, {
        "quantile": quantile,
        "threshold": threshold,
        "labelled_boxes": len(truth_scores),
        "pseudo_boxes": boxes,
        "kept": kept,
        "ignored": boxes - kept,
    }


def write_selection(
    cfg,
    reference,
    images: Sequence[ScoredImage],
    *,
    model_info: Mapping,
    output_dir: Optional[str] = None,
) -> Dict[str, object]:
    """Keep ``images`` by IMAGESCORE.SELECTION and write the four files; return paths, counts and
    the kept images' ids (``selected_ids``, in the strategy's order).

    ``reference`` is the scoring mode's (a ``Reference`` or ``ClassReferences``: both save to one
    file). The CSV's rank is always the ranking-value rank; its ``selected`` column marks what the strategy kept.
    Images that could not be read (``error`` set) are left out of the selection and listed in the CSV.
    In a set with kinds, the JSON's info and the result carry :func:`distractors_kept` as ``kinds_kept``.
    With "box_filter" the JSON holds the filtered pseudo boxes (:func:`apply_box_filter`); the CSV
    counts every scored one.
    """
    settings = cfg.IMAGESCORE
    unreadable = [image for image in images if image.error]
    images = [image for image in images if not image.error]
    if not images:
        raise ValueError(
            "IMAGESCORE.UNLABELLED_DATASETS %s holds no images to score"
            % (list(settings.UNLABELLED_DATASETS),)
        )
    paths = output_paths(cfg, output_dir)
    seed = selection_seed(cfg)
    selected_indices = select_by_strategy(
        images, settings.SELECTION, settings.SELECT_FRACTION, seed=seed
    )
    order = rank_by_score(
        [image.ranking_value for image in images], [image.image_id for image in images]
    )
    ranks = np.empty(len(images), dtype=np.int64)
    ranks[order] = np.arange(1, len(images) + 1)
    selected = np.zeros(len(images), dtype=bool)
    selected[selected_indices] = True
    kinds_kept = distractors_kept(images, selected_indices)
    kept, box_filter = [images[i] for i in selected_indices], None
    if settings.SELECTION == "box_filter":
        kept, box_filter = apply_box_filter(cfg, reference, kept)

    info = {
        "description": "imagescore_det pseudo labels of the unlabelled images kept by IMAGESCORE.SELECTION",
        "selection": settings.SELECTION,
        "selection_seed": seed if settings.SELECTION == "random" else None,
        "labelled_datasets": list(settings.LABELLED_DATASETS),
        "unlabelled_datasets": list(settings.UNLABELLED_DATASETS),
        "reference_file": os.path.abspath(paths["reference"]),
        "select_fraction": settings.SELECT_FRACTION,
        "selection_rule": "every scored image"
        if settings.SELECTION in EVERY_IMAGE
        else "ceil(fraction x scored images) on the decimal fraction; ties by ascending image id",
        "num_scored": len(images),
        "num_selected": int(selected.sum()),
        "score_mode": settings.SCORE_MODE,
        "box": {
            "layers": list(settings.BOX.LAYERS),
            "aggregate": settings.BOX.AGGREGATE,
            "ranking": settings.BOX.RANKING,
        },
        "box_filter": box_filter,
        "unreadable_images": [image.file_name for image in unreadable],
        "formula": settings.FORMULA,
        "grid": settings.GRID,
        "threshold_ratio": settings.THRESHOLD_RATIO,
        "threshold_stat": settings.THRESHOLD_STAT,
        "pseudo_score_thresh": settings.PSEUDO_SCORE_THRESH,
        "keep_empty": settings.KEEP_EMPTY,
        "model": dict(model_info),
        **({"kinds_kept": kinds_kept} if kinds_kept else {}),
        "date_created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    payload = build_pseudo_label_json(
        kept,
        labelled_class_names(cfg),
        keep_empty=settings.KEEP_EMPTY,
        info=info,
        category_ids=labelled_category_ids(cfg),
    )
    reference.save(paths["reference"])
    write_json(paths["pseudo_labels"], payload)
    write_csv(paths["scores"], *score_table(images, ranks, selected, unreadable=unreadable))
    plot_score_histogram(
        [image.ranking_value for image in images],
        selected,
        paths["histogram"],
        title="Image scores of %s (%d kept of %d)"
        % (", ".join(settings.UNLABELLED_DATASETS), selected.sum(), len(images)),
    )
    logger.info(
        "Kept %d of %d scored images (%s, top %g, ceil); %d of them have pseudo labels at confidence >= %g "
        "(%d boxes); wrote %s, %s, %s, %s",
        selected.sum(),
        len(images),
        settings.SELECTION,
        settings.SELECT_FRACTION,
        payload["info"]["num_images"],
        settings.PSEUDO_SCORE_THRESH,
        payload["info"]["num_annotations"],
        paths["reference"],
        paths["pseudo_labels"],
        paths["scores"],
        paths["histogram"],
    )
    if kinds_kept:
        logger.info(
            "Of the %d kept images, a share of %.3f are distractors (%s)",
            selected.sum(),
            kinds_kept["distractors_kept"],
            ", ".join(
                "%s %d" % item for item in kinds_kept.items() if item[0] != "distractors_kept"
            ),
        )
    if box_filter:
        logger.info(
            "Box filter: kept %d of %d pseudo boxes with a box score >= %.4g (quantile %g of the %d "
            "labelled ground-truth boxes' scores); the other %d are ignore boxes",
            box_filter["kept"],
            box_filter["pseudo_boxes"],
            box_filter["threshold"],
            box_filter["quantile"],
            box_filter["labelled_boxes"],
            box_filter["ignored"],
        )
    return {
        "num_scored": len(images),
        "num_unreadable": len(unreadable),
        "num_selected": int(selected.sum()),
        "num_pseudo_labelled_images": payload["info"]["num_images"],
        "num_pseudo_labels": payload["info"]["num_annotations"],
        "selected_ids": [images[index].image_id for index in selected_indices],
        **({"kinds_kept": kinds_kept} if kinds_kept else {}),
        **paths,
    }
