#!/usr/bin/env python
"""How precise one evaluation is: a trained checkpoint's AP50 on DATASETS.TEST[0] and its sd over a
bootstrap of the test images.

Runs the checkpoint with Detectron2's inference_on_dataset and a collector of per-image detections
(imagescore_det.evaluation.detections); the AP50 is Detectron2's Pascal VOC computation (VOC2007
11-point, or the area under the curve for VOC2012-style sets; difficult boxes ignored), redone in
NumPy (imagescore_det.evaluation.noise) so that the test images can be resampled with replacement.
On a VOC-format set Detectron2's own VOC evaluator runs in the same pass and its bbox/AP50 is
written beside it (the two agree). Prints the numbers and writes eval_noise.json to --output-dir
(default OUTPUT_DIR/eval_noise).

Example, after the demo run:
    python tools/eval_noise.py --config-file configs/demo_ssl.yaml --weights output/demo_ssl/model_final.pth
"""

import json
import os

from imagescore_det.utils.detectron2_import import require_detectron2_or_help

require_detectron2_or_help(__doc__)

from detectron2.engine import default_argument_parser  # noqa: E402

from imagescore_det.engine import launch_main, setup  # noqa: E402
from imagescore_det.evaluation.detections import evaluation_noise  # noqa: E402


def argument_parser():
    """Detectron2's parser (config, opts, launch flags) and the flags of this tool."""
    parser = default_argument_parser(epilog=__doc__)
    parser.add_argument(
        "--weights",
        default=None,
        metavar="FILE",
        help="detector checkpoint (default: MODEL.WEIGHTS if set, else OUTPUT_DIR/model_final.pth)",
    )
    parser.add_argument(
        "--output-dir",
        default=None,
        metavar="DIR",
        help="where eval_noise.json goes (default: OUTPUT_DIR/eval_noise)",
    )
    parser.add_argument(
        "--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument(
        "--compare-weights",
        default=None,
        metavar="FILE",
        help="a second checkpoint: also the bootstrap sd of the paired AP50 difference",
    )
    return parser


def main(args):
    """Evaluate and write on every process; returns the record on the main one (None elsewhere)."""
    cfg = setup(args)
    weights = args.weights or cfg.MODEL.WEIGHTS or os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
    if not os.path.isfile(weights):
        raise ValueError(
            "no detector checkpoint at %r: pass --weights, set MODEL.WEIGHTS, or train first"
            % weights
        )
    output_dir = args.output_dir or os.path.join(cfg.OUTPUT_DIR, "eval_noise")
    record = evaluation_noise(
        cfg,
        weights,
        output_dir,
        resamples=args.resamples,
        seed=args.seed,
        compare_weights=args.compare_weights,
    )
    if record is not None:
        print(json.dumps(record, indent=1))
        print(
            "AP50 %.2f, bootstrap sd %.2f (%d resamples of %d test images)"
            % (record["AP50"], record["AP50_bootstrap_sd"], record["resamples"], record["images"])
        )
        if args.compare_weights:
            print(
                "against %s: AP50 %.2f, bootstrap sd of the paired difference %.2f"
                % (args.compare_weights, record["compare_AP50"], record["difference_bootstrap_sd"])
            )
    return record


def invoke_main(argv=None) -> None:
    args = argument_parser().parse_args(argv)
    launch_main(main, args)


if __name__ == "__main__":
    invoke_main()
