#!/usr/bin/env python
"""Evaluate every finished arm of a study (tools/ssod_study.py) on another test set.

Each run's model_final.pth is tested, with the run's own config, on --dataset (a name its config
registers, e.g. through IMAGESCORE.REGISTER_DATASETS), as train_net --eval-only tests it; the
results are cached in each run's folder (test_<dataset>.json), so a second call evaluates only what
changed. Writes <study>/test_<dataset>/ with the study's tables: runs.csv, per_seed.csv,
summary.csv and summary.md (paired differences from control, p-values, gap closed). Example, the
nuclei study's second test set (the stardist wheel's hand-labelled image)::

    python tools/eval_study.py --study output/nuclei_study --dataset nuclei_stardist_test --metric ap
"""

import argparse
import sys

from imagescore_det.utils.detectron2_import import require_detectron2_or_help

require_detectron2_or_help(__doc__)

from tqdm import tqdm  # noqa: E402

from imagescore_det.study.extra_test import evaluate_study  # noqa: E402
from imagescore_det.study.summary import add_metric_argument  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--study", required=True, metavar="DIR", help="the study's --output-dir")
    parser.add_argument("--dataset", required=True, help="registered test set to evaluate on")
    add_metric_argument(parser)
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="KEY VALUE overrides of every run's config",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    summary = evaluate_study(
        args.study,
        args.dataset,
        args.opts,
        metric=args.metric,
        progress=lambda runs: tqdm(runs, desc="evaluating on %s" % args.dataset, unit="run"),
    )
    with open("%s/test_%s/summary.md" % (args.study.rstrip("/"), args.dataset)) as f:
        print(f.read())
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
