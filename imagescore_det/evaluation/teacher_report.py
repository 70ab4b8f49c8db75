"""What ``tools/score_voc.py`` does with one trained detector or several: score the unlabelled set
exactly as the swap does, write the swap's files (the selection gallery included), and, where the
unlabelled set has ground truth, compare the selections of both modes (:mod:`.mode_comparison`) and
write their tables.
"""

import csv
import os
from typing import Dict, List, Mapping, Sequence

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.utils import comm  # noqa: E402

from ..data.ground_truth import ground_truth_of, has_boxes  # noqa: E402
from ..detection.modes import MODES, score_unlabelled, shard_folder  # noqa: E402
from ..modeling.checkpoint import check_checkpoint_fits  # noqa: E402
from ..utils.io import atomic_write  # noqa: E402
from .mode_comparison import box_auroc, compare_modes, markdown_table, mean_and_sd  # noqa: E402
from .selection_gallery import write_selection_and_gallery  # noqa: E402

__all__ = ["score_teacher", "summarize_teachers", "write_table"]


def write_table(rows: Sequence[Mapping], output_dir: str, name: str = "selection_quality"):
    """``rows`` as ``name``.csv and ``name``.md in ``output_dir``; returns both paths."""
    csv_path, md_path = (
        os.path.join(output_dir, name + ".csv"),
        os.path.join(output_dir, name + ".md"),
    )
    with atomic_write(csv_path, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with atomic_write(md_path) as f:
        f.write(markdown_table(rows) + "\n")
    return csv_path, md_path


def score_teacher(cfg, weights: str, output_dir: str, *, seed: int = 0):
    """Score with the checkpoint ``weights`` in IMAGESCORE.SCORE_MODE, and with ground truth in every mode.

    The scoring shards go to ``output_dir``/IMAGESCORE.SCORE_SHARD_DIR, so a rerun with the same
    config, weights and data reuses the finished ones (and refuses those of another run).

    Runs on every process; returns the main process's result (None elsewhere):
    ``{"written": write_selection's result, "table": rows or None, "box_auroc": rows or None}``.
    """
    model = build_model(cfg)
    check_checkpoint_fits(model, weights)
    DetectionCheckpointer(model).load(weights)
    truth = ground_truth_of(cfg.IMAGESCORE.UNLABELLED_DATASETS)
    compared = has_boxes(truth)
    references, images = score_unlabelled(
        cfg,
        model,
        description="%s from %s" % (cfg.MODEL.META_ARCHITECTURE, weights),
        modes=tuple(MODES) if compared else (),
        shard_dir=shard_folder(cfg, output_dir),
    )
    result = None
    if comm.is_main_process():
        written = write_selection_and_gallery(
            cfg,
            references[cfg.IMAGESCORE.SCORE_MODE],
            images,
            model_info={"weights": os.path.abspath(weights)},
            output_dir=output_dir,
            truth=truth,
        )
        result = {"written": written, "table": None, "box_auroc": None}
        print(
            "Kept %d of %d scored images (ceil(%g x %d)); %d of them have pseudo labels"
            % (
                written["num_selected"],
                written["num_scored"],
                cfg.IMAGESCORE.SELECT_FRACTION,
                written["num_scored"],
                written["num_pseudo_labelled_images"],
            )
        )
        if written["num_unreadable"]:
            print(
                "Skipped %d unreadable image(s), listed in the CSV as not scored"
                % written["num_unreadable"]
            )
        if compared:
            result.update(
                compare(
                    cfg, [image for image in images if not image.error], truth, output_dir, seed
                )
            )
        else:
            print(
                "The unlabelled set has no ground-truth boxes: precision and recall of the pseudo labels need ground "
                "truth, so the strategies are not compared (the selection and its files are written all the same)"
            )
        if "kinds_kept" in written:
            print(
                "Distractors among the kept images: %s"
                % ", ".join("%s %.3g" % item for item in written["kinds_kept"].items())
            )
        for key in ("reference", "pseudo_labels", "scores", "histogram", "gallery"):
            print("%-14s %s" % (key, written[key]))
    comm.synchronize()
    return result


def compare(cfg, images, truth, output_dir: str, seed: int) -> Dict[str, List[Dict]]:
    """The selection-quality and per-box AUROC tables of images scored in both modes, printed and written."""
    rows = compare_modes(images, truth, cfg.IMAGESCORE.SELECT_FRACTION, seed=seed)
    paths = write_table(rows, output_dir)
    print(
        "Pseudo labels at confidence >= %g vs ground truth (same class, IoU >= 0.5); all_correct_share is over "
        "kept images with at least one pseudo label, 'empty' counts kept images without any:"
        % cfg.IMAGESCORE.PSEUDO_SCORE_THRESH
    )
    print(markdown_table(rows))
    print("Wrote %s and %s" % paths)
    aurocs = box_auroc(images, truth)
    paths = write_table(aurocs, output_dir, "box_auroc")
    print(
        "AUROC of each signal for correct vs wrong pseudo boxes (0.5 = chance):\n%s\nWrote %s and %s"
        % (markdown_table(aurocs), *paths)
    )
    return {"table": rows, "box_auroc": aurocs}


def summarize_teachers(results: Sequence[Mapping], output_dir: str) -> Dict[str, List[Dict]]:
    """Mean and sd over the teachers of every table they have; written beside the teachers' folders."""
    summary = {}
    for table, key, name in (
        ("table", "strategy", "selection_quality"),
        ("box_auroc", "signal", "box_auroc"),
    ):
        tables = [result[table] for result in results if result[table] is not None]
        if tables:
            summary[table] = mean_and_sd(tables, key)
            paths = write_table(summary[table], output_dir, "%s_over_teachers" % name)
            print(
                "Mean and sample sd over %d teachers:\n%s\nWrote %s and %s"
                % (len(tables), markdown_table(summary[table]), *paths)
            )
    return summary
