#!/usr/bin/env python
"""Classification mode (paper §3.1): train with image-score or softmax selection, then report.

Example (the digits study, docs/digits_study.md):
    python tools/train_classifier.py --config-file configs/classification/digits.yaml \\
        --mode baseline softmax imagescore assemble --output-dir output/digits_study \\
        --report-dir docs/digits_study --num-threads 1

Runs are written to OUTPUT_DIR/runs/seed<s>/<variant>.npz; the report (tables as Markdown and
CSV, the accuracy-by-score figure, the AUROC comparison) to REPORT_DIR (default OUTPUT_DIR).
Runs left in OUTPUT_DIR by earlier calls with the same config (other seeds or modes) join the
report; a different config is refused. On shared CPUs, --num-threads 1 avoids thread contention.
"""

import argparse
import logging
import time

import torch

from imagescore_det.classification import (
    MODES,
    load_classification_config,
    load_split,
    run_experiment,
)
from imagescore_det.reports.classification import write_classification_report


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config-file",
        required=True,
        metavar="FILE",
        help="YAML config, e.g. configs/classification/digits.yaml",
    )
    parser.add_argument(
        "--mode",
        nargs="+",
        choices=MODES,
        default=list(MODES),
        help="what to train per seed (default: all): baseline = labelled images only; softmax / imagescore = add the "
        "additional images selected per class by max softmax probability / image score; assemble = baseline plus one "
        "model boosted per class, combined by image score",
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        metavar="SEED",
        help="training seeds (default: the config's SEEDS)",
    )
    parser.add_argument(
        "--output-dir",
        required=True,
        help="folder for the config copy and run files (created if needed)",
    )
    parser.add_argument("--report-dir", help="folder for the report (default: --output-dir)")
    parser.add_argument(
        "--num-threads", type=int, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: write the report of the runs already in --output-dir",
    )
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        metavar="KEY VALUE",
        help="config overrides, e.g. SOLVER.EPOCHS_LABELLED 5",
    )
    return parser


def setup(args):
    """Logging, threads and the frozen config."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    return load_classification_config(args.config_file, args.opts)


def main(args) -> None:
    cfg = setup(args)
    seeds = args.seeds if args.seeds else list(cfg.SEEDS)
    started = time.perf_counter()
    if args.report_only:
        class_names = load_split(cfg).class_names
    else:
        class_names = run_experiment(
            cfg, args.mode, seeds, args.output_dir, progress=not args.no_progress
        ).class_names
    written = write_classification_report(
        args.output_dir, args.report_dir or args.output_dir, class_names, cfg
    )
    logging.getLogger("train_classifier").info(
        "done in %.1f s; wrote %s", time.perf_counter() - started, ", ".join(written)
    )


if __name__ == "__main__":
    main(get_parser().parse_args())
