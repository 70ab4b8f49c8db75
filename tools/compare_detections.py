#!/usr/bin/env python
"""Two or more detectors side by side on the same test images: a PNG with one row per image, its
ground truth first, then each model's detections (green: right, red: wrong).

Example, the nuclei study's control beside two arms on three test tiles::

    python tools/compare_detections.py --config-file configs/nuclei_ssl.yaml \\
        --weights control=output/nuclei_study/seed0/control/model_final.pth \\
                  imagescore=output/nuclei_study/seed0/imagescore/model_final.pth \\
        --images 3 --output docs/nuclei_study/detections.png
"""

from imagescore_det.utils.detectron2_import import require_detectron2_or_help

require_detectron2_or_help(__doc__)

from detectron2.data import DatasetCatalog  # noqa: E402
from detectron2.engine import default_argument_parser  # noqa: E402

from imagescore_det.data.ground_truth import ground_truth_of  # noqa: E402
from imagescore_det.detection.selection import labelled_class_names  # noqa: E402
from imagescore_det.engine import ImageScoreTrainer, launch_main, setup  # noqa: E402
from imagescore_det.evaluation.detection_comparison import (  # noqa: E402
    detections_of,
    draw_detection_comparison,
)


def argument_parser():
    parser = default_argument_parser(epilog=__doc__)
    parser.add_argument(
        "--weights",
        nargs="+",
        required=True,
        metavar="LABEL=FILE",
        help="each model's label and checkpoint, in the order of the columns",
    )
    parser.add_argument(
        "--dataset", default=None, help="registered test set (default: DATASETS.TEST[0])"
    )
    parser.add_argument(
        "--images",
        type=int,
        default=3,
        help="rows: this many test images with ground-truth boxes, evenly spaced over the set in "
        "its order (not chosen by any model's result; default 3)",
    )
    parser.add_argument(
        "--score-thresh",
        type=float,
        default=0.5,
        help="draw detections at or above this confidence (default 0.5)",
    )
    parser.add_argument("--output", required=True, metavar="PNG", help="the picture to write")
    return parser


def parse_weights(entries):
    """``{label: file}`` from LABEL=FILE entries, each label once."""
    weights = {}
    for entry in entries:
        label, sep, path = entry.partition("=")
        if not sep or not label or not path or label in weights:
            raise ValueError("--weights takes distinct LABEL=FILE entries, not %r" % entry)
        weights[label] = path
    return weights


def evenly_spaced(records, count):
    """``count`` of ``records`` at evenly spaced positions, the first and the last included."""
    if count < 1 or not records:
        raise ValueError("--images must be at least 1, on a set with ground-truth boxes")
    count = min(count, len(records))
    if count == 1:
        return records[:1]
    return [records[round(i * (len(records) - 1) / (count - 1))] for i in range(count)]


def main(args):
    weights = parse_weights(args.weights)
    cfg = setup(args)
    dataset = args.dataset or cfg.DATASETS.TEST[0]
    truth = ground_truth_of([dataset])
    records = evenly_spaced(
        [r for r in DatasetCatalog.get(dataset) if len(truth.get(r["image_id"], ((), ()))[1])],
        args.images,
    )
    found = {
        label: detections_of(
            ImageScoreTrainer.model_to_test(cfg, path), cfg, records, args.score_thresh
        )
        for label, path in weights.items()
    }
    rows = [{label: found[label][i] for label in weights} for i in range(len(records))]
    grid = draw_detection_comparison(rows, truth, labelled_class_names(cfg), args.output)
    print(
        "Wrote %s: %d images x %s"
        % (args.output, grid["rows"], ", ".join(["ground truth", *weights]))
    )
    return grid


if __name__ == "__main__":
    args = argument_parser().parse_args()
    launch_main(main, args)
