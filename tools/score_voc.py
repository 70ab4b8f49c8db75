#!/usr/bin/env python
"""Score the unlabelled set with a trained detector and compare selection strategies.

Scores IMAGESCORE.UNLABELLED_DATASETS against the reference of IMAGESCORE.LABELLED_DATASETS and
writes the swap's files (reference, pseudo-label JSON, per-image CSV, histogram PNG and
selection_gallery.png, the best and worst images with their pseudo boxes), exactly as the training
hook does. Where the unlabelled set has ground truth, both score modes run in the same two passes
and the tool writes the precision, recall and all-correct share of the pseudo labels (and the
distractors) that each strategy keeps (image score, box score, confidence, rank product, random;
selection_quality.csv/.md), and the per-box AUROC of each signal (box_auroc.csv/.md). Without
ground truth (an image folder) it writes the five files only; unreadable images are skipped,
named and listed in the CSV. ``--weights A B C`` scores several teachers (OUTPUT/teacher<k>/) and
writes the mean and sd of every cell; ``--num-gpus N`` scores a shard per process (CPU: gloo),
with the same result as one process. Library: imagescore_det.evaluation.teacher_report.

Example, after the demo run:
    python tools/score_voc.py --config-file configs/demo_ssl.yaml --weights output/demo_ssl/model_final.pth
    python tools/score_voc.py --config-file configs/demo_ssl.yaml --weights seed0.pth seed1.pth seed2.pth
    python tools/score_voc.py --config-file configs/demo_ssl.yaml --num-gpus 2     # two processes
"""

import os

# oneDNN (PyTorch on CPU) caches a primitive per input shape, and detection images all differ in
# shape, so an uncapped cache grows with every image scored (bench/reference_memory.py measures it).
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "0")

from imagescore_det.utils.detectron2_import import require_detectron2_or_help  # noqa: E402

require_detectron2_or_help(__doc__)

from detectron2.engine import default_argument_parser  # noqa: E402
from detectron2.utils import comm  # noqa: E402

from imagescore_det.engine import launch_main, setup  # noqa: E402
from imagescore_det.evaluation.teacher_report import score_teacher, summarize_teachers  # noqa: E402


def argument_parser():
    """Detectron2's parser (config, opts, launch flags) and the flags of this tool."""
    parser = default_argument_parser(epilog=__doc__)
    parser.add_argument(
        "--weights",
        nargs="+",
        default=None,
        metavar="FILE",
        help="detector checkpoint(s) to score with (default: MODEL.WEIGHTS if set, else OUTPUT_DIR/model_final.pth); "
        "several: one table per teacher and their mean and sd",
    )
    parser.add_argument(
        "--output-dir",
        default=None,
        metavar="DIR",
        help="where the files go; the IMAGESCORE.*_FILE names resolve inside it (default: OUTPUT_DIR/score_voc)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the random strategy's draw (default: 0)"
    )
    return parser


def weights_of(cfg, requested):
    path = (
        requested
        if requested is not None
        else (cfg.MODEL.WEIGHTS or os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))
    )
    if not os.path.isfile(path):
        raise ValueError(
            "no detector checkpoint at %r: pass --weights, set MODEL.WEIGHTS, or train first" % path
        )
    return path


def main(args):
    """Score on every process; write and compare on the main one. Returns its result (None elsewhere).

    One checkpoint: that teacher's result. Several: ``{"teachers": [results], "summary": {table: rows}}``.
    """
    cfg = setup(args)
    weights = [weights_of(cfg, path) for path in (args.weights or [None])]
    output_dir = args.output_dir or os.path.join(cfg.OUTPUT_DIR, "score_voc")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError("--output-dir %s is a file, not a folder" % output_dir)
    if len(weights) == 1:
        return score_teacher(cfg, weights[0], output_dir, seed=args.seed)
    results = [
        score_teacher(cfg, path, os.path.join(output_dir, "teacher%d" % k), seed=args.seed)
        for k, path in enumerate(weights)
    ]
    summary = summarize_teachers(results, output_dir) if comm.is_main_process() else None
    comm.synchronize()
    return {"teachers": results, "summary": summary} if comm.is_main_process() else None


def invoke_main(argv=None) -> None:
    args = argument_parser().parse_args(argv)
    launch_main(main, args)


if __name__ == "__main__":
    invoke_main()
