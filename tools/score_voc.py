#!/usr/bin/env python
"""Score the unlabelled set with a trained detector and compare selection strategies.

Builds the reference from IMAGESCORE.LABELLED_DATASETS, scores IMAGESCORE.UNLABELLED_DATASETS, keeps
the top IMAGESCORE.SELECT_FRACTION by image score (ceil of the fraction, ties by image id), and writes
the reference, the pseudo-label JSON, the per-image CSV and a score histogram PNG, exactly as the
training hook does at the swap. Where the unlabelled set has ground truth (VOC2012 and the synthetic
set do), it then compares three ways of keeping the same number of images -- image score, mean
detection confidence (the paper's softmax baseline) and random -- by the precision and recall of
their pseudo labels (same class, IoU >= 0.5) and the share of kept images whose pseudo labels are all
correct (over kept images with at least one pseudo label), and writes that table as CSV and Markdown.
With ground truth it also scores in the other IMAGESCORE.SCORE_MODE ("image": one reference for whole
images; "box": each pseudo box against its class's reference), so that the table compares image score,
box score (min and mean over an image's boxes), confidence, the score x confidence rank product and
random on the same detections, and a per-box table gives the AUROC with which box score, confidence
and their combination separate correct pseudo boxes from wrong ones.
Without ground truth (an image folder, see datasets/README.md) it writes the four files and says that
precision and recall need ground truth; images that cannot be read are skipped, named in a warning,
and listed in the CSV as not scored.

``--weights A B C`` scores several teachers (each into OUTPUT/teacher<k>/) and writes the mean and
standard deviation of every cell over them, so that a difference can be told from noise.

With ``--num-gpus N`` (Detectron2's ``launch``: N processes, on GPUs where there are, else CPU with
gloo) each process scores its shard of the images, the reference sums are combined across processes,
the scored images are gathered, and the main process writes the files; the result equals a
one-process run.

Example, after the demo run:
    python tools/score_voc.py --config-file configs/demo_ssl.yaml --weights output/demo_ssl/model_final.pth
    python tools/score_voc.py --config-file configs/demo_ssl.yaml --weights seed0.pth seed1.pth seed2.pth
    python tools/score_voc.py --config-file configs/demo_ssl.yaml --num-gpus 2     # two processes
"""
import argparse
import csv
import logging
import os

# oneDNN (PyTorch on CPU) caches a primitive per input shape, and detection images all differ in
# shape, so an uncapped cache grows with every image scored (bench/reference_memory.py measures it).
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "0")

from imagescore_det.utils.detectron2_import import require_detectron2_or_help

require_detectron2_or_help(__doc__)

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog
from detectron2.engine import launch
from detectron2.modeling import build_model
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from imagescore_det import build_config
from imagescore_det.data.registry import register_config_datasets
from imagescore_det.data.voc import prepare_synthetic_data
from imagescore_det.engine import score_unlabelled, write_selection
from imagescore_det.engine.box_quality import box_auroc, compare_modes, markdown_table, mean_and_sd
from imagescore_det.engine.selection_quality import ground_truth_from_dicts
from imagescore_det.utils.io import atomic_write

logger = logging.getLogger("imagescore_det")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE", help="training config, e.g. configs/demo_ssl.yaml")
    parser.add_argument(
        "--weights", nargs="+", default=None, metavar="FILE",
        help="detector checkpoint(s) to score with (default: MODEL.WEIGHTS if set, else OUTPUT_DIR/model_final.pth); "
        "several: one table per teacher and their mean and sd",
    )
    parser.add_argument(
        "--output-dir", default=None, metavar="DIR",
        help="where the files go; the IMAGESCORE.*_FILE names resolve inside it (default: OUTPUT_DIR/score_voc)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random strategy's draw (default: 0)")
    parser.add_argument("--num-gpus", type=int, default=1, help="processes per machine, as in Detectron2's train_net (CPU: gloo)")
    parser.add_argument("--num-machines", type=int, default=1, help="total number of machines")
    parser.add_argument("--machine-rank", type=int, default=0, help="the rank of this machine (unique per machine)")
    parser.add_argument(
        "--dist-url", default="auto",
        help="initialization URL for torch.distributed (default: auto = a free port on 127.0.0.1; file:///path also works)",
    )
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, default=[],
        help="config overrides as KEY VALUE pairs at the end, e.g. IMAGESCORE.SELECT_FRACTION 0.2 MODEL.DEVICE cuda",
    )
    return parser.parse_args(argv)


def setup(args):
    cfg = build_config(args.config_file, args.opts)
    setup_logger(name="detectron2", distributed_rank=comm.get_rank())
    setup_logger(name="imagescore_det", distributed_rank=comm.get_rank())
    register_config_datasets(cfg)
    return cfg


def weights_of(cfg, requested):
    path = requested if requested is not None else (cfg.MODEL.WEIGHTS or os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))
    if not os.path.isfile(path):
        raise ValueError("no detector checkpoint at %r: pass --weights, set MODEL.WEIGHTS, or train first" % path)
    return path


def write_table(rows, output_dir, name="selection_quality"):
    """``rows`` as ``name``.csv and ``name``.md beside the other outputs; returns both paths."""
    csv_path, md_path = os.path.join(output_dir, name + ".csv"), os.path.join(output_dir, name + ".md")
    with atomic_write(csv_path, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with atomic_write(md_path) as f:
        f.write(markdown_table(rows) + "\n")
    return csv_path, md_path


def main(args):
    """Score on every process; write and compare on the main one. Returns its result (None elsewhere).

    One checkpoint: that teacher's result. Several: ``{"teachers": [results], "summary": {table: rows}}``.
    """
    cfg = setup(args)
    prepare_synthetic_data(cfg)
    weights = [weights_of(cfg, path) for path in (args.weights or [None])]
    output_dir = args.output_dir or os.path.join(cfg.OUTPUT_DIR, "score_voc")
    if len(weights) == 1:
        return score_teacher(cfg, args, weights[0], output_dir)
    results = [score_teacher(cfg, args, path, os.path.join(output_dir, "teacher%d" % k)) for k, path in enumerate(weights)]
    summary = summarize(results, output_dir) if comm.is_main_process() else None
    comm.synchronize()
    return {"teachers": results, "summary": summary} if comm.is_main_process() else None


def score_teacher(cfg, args, weights, output_dir):
    """Score with one checkpoint in IMAGESCORE.SCORE_MODE, and with ground truth in the other mode too."""
    model = build_model(cfg)
    DetectionCheckpointer(model).load(weights)
    description = "%s from %s" % (cfg.MODEL.META_ARCHITECTURE, weights)
    reference, images = score_unlabelled(cfg, model, description=description)
    truth = ground_truth_from_dicts([d for name in cfg.IMAGESCORE.UNLABELLED_DATASETS for d in DatasetCatalog.get(name)])
    by_mode = {cfg.IMAGESCORE.SCORE_MODE: images}
    if any(len(classes) for _, classes in truth.values()):
        other = cfg.clone()
        other.defrost()
        other.IMAGESCORE.SCORE_MODE = "image" if cfg.IMAGESCORE.SCORE_MODE == "box" else "box"
        by_mode[other.IMAGESCORE.SCORE_MODE] = score_unlabelled(other, model, description=description)[1]
    result = report(cfg, args, reference, by_mode, truth, weights, output_dir) if comm.is_main_process() else None
    comm.synchronize()
    return result


def summarize(results, output_dir):
    """Mean and sd over the teachers of every table they have; written beside the teachers' folders."""
    summary = {}
    for table, key in (("table", "strategy"), ("box_auroc", "signal")):
        tables = [result[table] for result in results if result[table] is not None]
        if tables:
            summary[table] = mean_and_sd(tables, key)
            paths = write_table(summary[table], output_dir, "%s_over_teachers" % ("selection_quality" if table == "table" else table))
            print("Mean and sample sd over %d teachers:\n%s\nWrote %s and %s" % (len(tables), markdown_table(summary[table]), *paths))
    return summary


def report(cfg, args, reference, by_mode, truth, weights, output_dir):
    """Write the selection, and compare the strategies where the unlabelled set has ground truth."""
    images = by_mode[cfg.IMAGESCORE.SCORE_MODE]
    written = write_selection(cfg, reference, images, model_info={"weights": os.path.abspath(weights)}, output_dir=output_dir)
    scored, fraction = written["num_scored"], cfg.IMAGESCORE.SELECT_FRACTION
    print(
        "Kept %d of %d scored images (ceil(%g x %d)); %d of them have pseudo labels"
        % (written["num_selected"], scored, fraction, scored, written["num_pseudo_labelled_images"])
    )
    result = {"written": written, "table": None, "box_auroc": None}
    if written["num_unreadable"]:
        print("Skipped %d unreadable image(s), listed in the CSV as not scored" % written["num_unreadable"])
    if len(by_mode) == 2:
        scored = {mode: [image for image in found if not image.error] for mode, found in by_mode.items()}
        rows = compare_modes(scored["image"], scored["box"], truth, cfg.IMAGESCORE.SELECT_FRACTION, seed=args.seed)
        paths = write_table(rows, output_dir)
        print(
            "Pseudo labels at confidence >= %g vs ground truth (same class, IoU >= 0.5); all_correct_share is over "
            "kept images with at least one pseudo label, 'empty' counts kept images without any:"
            % cfg.IMAGESCORE.PSEUDO_SCORE_THRESH
        )
        print(markdown_table(rows))
        print("Wrote %s and %s" % paths)
        aurocs = box_auroc(scored["box"], truth)
        paths = write_table(aurocs, output_dir, "box_auroc")
        print("AUROC of each signal for correct vs wrong pseudo boxes (0.5 = chance):\n%s\nWrote %s and %s" % (markdown_table(aurocs), *paths))
        result.update(table=rows, box_auroc=aurocs)
    else:
        print(
            "The unlabelled set has no ground-truth boxes: precision and recall of the pseudo labels need ground "
            "truth, so the strategies are not compared (the selection and its files are written all the same)"
        )
    for key in ("reference", "pseudo_labels", "scores", "histogram"):
        print("%-14s %s" % (key, written[key]))
    return result


def invoke_main(argv=None) -> None:
    args = parse_args(argv)
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args,))


if __name__ == "__main__":
    invoke_main()
