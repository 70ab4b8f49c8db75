#!/usr/bin/env python
"""Side-by-side study of semi-supervised arms from one teacher per seed (imagescore_det.study).

Per seed, tools/train_net.py trains the teacher once, labelled only, to IMAGESCORE.SWAP_ITER. Every
arm resumes that checkpoint (iteration, optimizer, LR schedule) to SOLVER.MAX_ITER, with the same
settings except:

    control     labelled images only (IMAGESCORE.REGIME labelled_only)
    imagescore  the swap keeps the top SELECT_FRACTION by image score    (IMAGESCORE.SELECTION image_score)
    confidence  ... by mean detection confidence                         (IMAGESCORE.SELECTION confidence)
    random      ... drawn at random with the run's SEED                   (IMAGESCORE.SELECTION random)
    all         every unlabelled image pseudo-labelled, STAC-style       (IMAGESCORE.SELECTION all)
    oracle      labelled + the unlabelled set with its ground truth (the fully labelled bound)

Arms are evaluated at TEST.EVAL_PERIOD, or every third of the post-swap phase where that gives
fewer than 3 evaluations after the swap (it must divide SWAP_ITER). Writes runs.csv, summary.csv,
summary.md (paired delta vs control, one-sided paired t-test, gap closed), ap50_curves.png and one
folder per run (seed<S>/<arm>). A finished run is reused while its fingerprint (config after
overrides, arm, seed, data) holds; a changed setting trains it again. Example::

    python tools/ssod_study.py --config-file configs/demo_ssl.yaml --seeds 0 1 2 \\
        --arms control imagescore confidence random all oracle --data-seed 1 --output-dir output/study_data1
"""

import argparse
import os
import shlex
import sys

from imagescore_det.utils.detectron2_import import require_detectron2_or_help

require_detectron2_or_help(__doc__)

from imagescore_det.study.runner import ARMS, run_study  # noqa: E402

TRAIN_NET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_net.py")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config-file",
        required=True,
        metavar="FILE",
        help="training config, e.g. configs/demo_ssl.yaml",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="training seeds (cfg.SEED), one teacher each",
    )
    parser.add_argument(
        "--arms",
        nargs="+",
        default=list(ARMS),
        choices=list(ARMS),
        help="arms to run from each teacher",
    )
    parser.add_argument(
        "--data-seed",
        type=int,
        default=None,
        help="IMAGESCORE.SYNTHETIC.SEED (default: the config's)",
    )
    parser.add_argument(
        "--output-dir", required=True, metavar="DIR", help="where the runs and the tables go"
    )
    parser.add_argument(
        "--jobs", type=int, default=2, help="training processes at a time (default 2)"
    )
    parser.add_argument(
        "--reuse-stale",
        action="store_true",
        help="reuse finished runs whose settings differ from this command's (summary.md says which); "
        "without it they train again",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="OMP_NUM_THREADS of each process (default 1)"
    )
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="KEY VALUE config overrides shared by every run",
    )
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.threads < 1:
        parser.error("--jobs and --threads must be at least 1")
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    return run_study(
        parse_args(argv),
        command="python tools/ssod_study.py " + shlex.join(argv),
        train_net=TRAIN_NET,
    )


if __name__ == "__main__":
    main()
