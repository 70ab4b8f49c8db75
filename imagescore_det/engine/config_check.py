"""Every IMAGESCORE setting checked before anything is read, trained or scored.

A bad value found at the swap costs the whole run up to it (60,000 iterations with
``voc_ssl.yaml``), so each tool's setup calls :func:`check_imagescore_config` first; every message
names the key and the value. Dataset names are checked after registration
(:func:`imagescore_det.data.registry.register_config_datasets`), since ``REGISTER_DATASETS``
declares some of them.
"""

import math

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from ..data.synthetic import check_distractors  # noqa: E402
from ..detection.gate import GATES  # noqa: E402
from ..detection.modes import MODES, check_box_settings  # noqa: E402
from ..detection.passes import score_batch_size, score_shard_size  # noqa: E402
from ..detection.selection import EVERY_IMAGE, selection_seed  # noqa: E402
from ..scoring import constants  # noqa: E402
from .hooks import REGIMES  # noqa: E402
from .trainer import pseudo_ims_per_batch  # noqa: E402

__all__ = ["check_imagescore_config"]


def _choice(key: str, value, choices) -> None:
    if value not in choices:
        raise ValueError("%s is %r; choose one of %s" % (key, value, ", ".join(map(repr, choices))))


def _within(key: str, value, low: float, high: float, *, low_open: bool = False) -> None:
    number = float(value)
    if math.isnan(number) or number > high or number < low or (low_open and number == low):
        bracket = "(" if low_open else "["
        raise ValueError("%s is %r; it must lie in %s%g, %g]" % (key, value, bracket, low, high))


def check_imagescore_config(cfg, *, training: bool) -> None:
    """Refuse any IMAGESCORE value, or combination, that cannot work (ValueError naming the key).

    ``training``: the tool trains to ``SOLVER.MAX_ITER``, so the swap must fall inside the run.
    """
    s = cfg.IMAGESCORE
    _choice("IMAGESCORE.REGIME", s.REGIME, REGIMES)
    _choice("IMAGESCORE.SCORE_MODE", s.SCORE_MODE, tuple(MODES))
    _choice("IMAGESCORE.FORMULA", s.FORMULA, constants.FORMULAS)
    _choice("IMAGESCORE.THRESHOLD_STAT", s.THRESHOLD_STAT, constants.THRESHOLD_STATS)
    check_box_settings(s.BOX)
    selection_seed(cfg)  # IMAGESCORE.SELECTION, and a fixed SEED for "random"
    score_batch_size(cfg)
    score_shard_size(cfg)
    check_distractors(
        s.SYNTHETIC.DISTRACTOR_FRACTION,
        s.SYNTHETIC.DISTRACTORS,
        names=("IMAGESCORE.SYNTHETIC.DISTRACTOR_FRACTION", "IMAGESCORE.SYNTHETIC.DISTRACTORS"),
    )
    _within("IMAGESCORE.THRESHOLD_RATIO", s.THRESHOLD_RATIO, 0.0, 1.0, low_open=True)
    _within("IMAGESCORE.SELECT_FRACTION", s.SELECT_FRACTION, 0.0, 1.0)
    _within("IMAGESCORE.BOX.FILTER_QUANTILE", s.BOX.FILTER_QUANTILE, 0.0, 1.0)
    if s.SELECTION == "box_filter" and s.SCORE_MODE != "box":
        raise ValueError(
            "IMAGESCORE.SELECTION 'box_filter' filters pseudo boxes by their box score, but "
            "IMAGESCORE.SCORE_MODE is %r: set it to 'box'" % s.SCORE_MODE
        )
    _within("IMAGESCORE.PSEUDO_SCORE_THRESH", s.PSEUDO_SCORE_THRESH, 0.0, 1.0)
    _within(
        "IMAGESCORE.PSEUDO_TRAINING.IGNORE_SCORE_THRESH",
        s.PSEUDO_TRAINING.IGNORE_SCORE_THRESH,
        0.0,
        1.0,
    )
    for key, value in (
        ("GRID", s.GRID),
        ("UPDATE_PERIOD", s.UPDATE_PERIOD),
        ("MEAN_TEACHER.REFERENCE_PERIOD", s.MEAN_TEACHER.REFERENCE_PERIOD),
    ):
        if int(value) < 0:
            raise ValueError("IMAGESCORE.%s is %r; it must be >= 0" % (key, value))
    _choice("IMAGESCORE.MEAN_TEACHER.GATE", s.MEAN_TEACHER.GATE, GATES)
    _within("IMAGESCORE.MEAN_TEACHER.EMA_DECAY", s.MEAN_TEACHER.EMA_DECAY, 0.0, 1.0)
    _within("IMAGESCORE.MEAN_TEACHER.GATE_QUANTILE", s.MEAN_TEACHER.GATE_QUANTILE, 0.0, 1.0)
    if s.SELECTION == "random" and cfg.SEED < 0:
        raise ValueError(
            "IMAGESCORE.SELECTION 'random' draws with SEED, which is %d: set SEED >= 0" % cfg.SEED
        )
    for key in ("LABELLED_DATASETS", "UNLABELLED_DATASETS"):
        names = list(s[key])
        if not names:
            raise ValueError("IMAGESCORE.%s is empty: name at least one registered dataset" % key)
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError("IMAGESCORE.%s names %s more than once" % (key, ", ".join(repeated)))
    selects = not training or s.REGIME == "swap"
    if selects and s.SELECTION not in EVERY_IMAGE and float(s.SELECT_FRACTION) == 0:
        raise ValueError(
            "IMAGESCORE.SELECT_FRACTION is 0 with IMAGESCORE.SELECTION %r: no image would be kept, and a swapping "
            "run would train as the labelled-only control; set a fraction in (0, 1], SELECTION 'all', or "
            "REGIME 'labelled_only'" % s.SELECTION
        )
    if training and s.REGIME in ("swap", "mean_teacher"):
        if not 0 <= s.SWAP_ITER < cfg.SOLVER.MAX_ITER:
            raise ValueError(
                "IMAGESCORE.SWAP_ITER is %d, not in [0, SOLVER.MAX_ITER=%d): the %s would never happen; set "
                "IMAGESCORE.REGIME labelled_only for a labelled-only run"
                % (
                    s.SWAP_ITER,
                    cfg.SOLVER.MAX_ITER,
                    "swap" if s.REGIME == "swap" else "mean teacher's start",
                )
            )
        pseudo_ims_per_batch(cfg)  # PSEUDO_RATIO x IMS_PER_BATCH must be whole images per process
    if s.REGIME == "mean_teacher":
        if not s.PSEUDO_TRAINING.ENABLED:
            raise ValueError(
                "IMAGESCORE.PSEUDO_TRAINING.ENABLED is False: the mean teacher's pseudo labels train "
                "through the pseudo mode of IMAGESCORE.PSEUDO_TRAINING; set it True"
            )
        if pseudo_ims_per_batch(cfg) == 0:
            raise ValueError(
                "IMAGESCORE.PSEUDO_TRAINING.PSEUDO_RATIO is 0: the mean teacher would label no "
                "unlabelled image per batch"
            )
