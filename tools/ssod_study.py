#!/usr/bin/env python
"""Side-by-side study of semi-supervised arms from one teacher per seed (imagescore_det.study).

Per seed, tools/train_net.py trains the teacher once, labelled only, to IMAGESCORE.SWAP_ITER. Every
arm resumes that checkpoint (iteration, optimizer, LR schedule) to SOLVER.MAX_ITER, with the same
settings except:

    control       labelled images only (IMAGESCORE.REGIME labelled_only)
    imagescore    the swap keeps the top SELECT_FRACTION by image score (SELECTION image_score, SCORE_MODE image)
    boxscore      ... by box score                     (SELECTION image_score, SCORE_MODE box, BOX.RANKING score)
    boxscore_x_confidence  ... by box score x confidence (the same, BOX.RANKING score_x_confidence)
    boxfilter     every image; a pseudo box is kept where its box score clears BOX.FILTER_QUANTILE of the
                  labelled ground-truth boxes' scores, else it is an ignore box (SELECTION box_filter, SCORE_MODE box)
    confidence    ... by mean detection confidence                      (IMAGESCORE.SELECTION confidence)
    random        ... drawn at random with the run's SEED               (IMAGESCORE.SELECTION random)
    all           every unlabelled image pseudo-labelled, STAC-style    (IMAGESCORE.SELECTION all)
    oracle        labelled + the unlabelled set with its ground truth (the fully labelled bound)
    mean_teacher  an EMA teacher labels each unlabelled batch online (IMAGESCORE.REGIME mean_teacher)
    mean_teacher_image ... its pseudo-labelled images gated by image score  (MEAN_TEACHER.GATE image)
    mean_teacher_box ... its pseudo boxes gated by box score               (MEAN_TEACHER.GATE box)
                  (not in the default --arms; AP50 is the teacher's)

Arms are evaluated at TEST.EVAL_PERIOD, or every third of the post-swap phase where that gives
fewer than 3 evaluations after the swap (it must divide SWAP_ITER); a run's final AP50 is the mean
of its last --final-evals evaluations after the swap. --data-seeds A B C runs the grid on several
synthetic sets (IMAGESCORE.SYNTHETIC.SEED), each in data<D>/. --fractions 0.1 0.3 0.5 runs every
arm that keeps a fraction at each SELECT_FRACTION from the same teachers (folders <arm>_f<fraction>;
the others once) and plots selection_curve.png. Writes runs.csv, summary.csv and summary.md (per
(arm, fraction) a row pooled over every (data seed, seed) pair and one per data seed: paired delta
vs control, random and all with one-sided paired t-tests, 95 % interval half-width, gap closed,
share of distractors kept), ap50_curves.png and a folder per run ([data<D>/]seed<S>/<arm>). A
finished run is reused while its fingerprint (config after overrides, arm, seed, data) holds; a
changed setting trains it again. --reuse-from DIR links in another study's finished teachers and
controls where they trained as this command's would: they read no unlabelled image, so a study
on an uncurated pool (IMAGESCORE.SYNTHETIC.DISTRACTOR_FRACTION) shares them with the clean one.
--metric ap compares the arms by COCO-style AP instead of AP50. Any config whose
unlabelled and test sets have ground truth works, e.g. configs/nuclei_ssl.yaml (COCO-format sets from
tools/prepare_nuclei.py); AP50 and AP are the test set's evaluator's (COCO or Pascal VOC), which
summary.md names. Examples::

    python tools/ssod_study.py --config-file configs/demo_ssl.yaml --seeds 0 1 2 \\
        --arms control imagescore confidence random all oracle --data-seeds 1 2 3 --output-dir output/confirm
    python tools/ssod_study.py --config-file configs/nuclei_ssl.yaml --arms control imagescore random oracle \\
        --output-dir output/nuclei_study
"""

import os
import shlex
import sys

from imagescore_det.utils.detectron2_import import require_detectron2_or_help

require_detectron2_or_help(__doc__)

from imagescore_det.study.runner import parse_study_args, run_study  # noqa: E402

TRAIN_NET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_net.py")


def parse_args(argv=None):
    return parse_study_args(argv, description=__doc__)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    return run_study(
        parse_args(argv),
        command="python tools/ssod_study.py " + shlex.join(argv),
        train_net=TRAIN_NET,
    )


if __name__ == "__main__":
    main()
