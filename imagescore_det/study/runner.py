"""The side-by-side study of semi-supervised arms from one teacher per seed; ``tools/ssod_study.py``
is its command line (its help says what the arms are and what is written).

Each run is a ``tools/train_net.py`` subprocess, so the hook, selection and pseudo-label code are
training's own; the study only chooses each run's settings, collects its evaluations and
pseudo-label quality, and writes the tables (:mod:`.summary`).
"""

import argparse
import concurrent.futures
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from typing import List, Optional, Sequence, Tuple

import torch
import yaml

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.config import get_cfg  # noqa: E402
from detectron2.data import MetadataCatalog  # noqa: E402
from fvcore.common.checkpoint import Checkpointer  # noqa: E402
from tqdm import tqdm  # noqa: E402

from ..config import add_imagescore_config, build_config  # noqa: E402
from ..data.ground_truth import ground_truth_of  # noqa: E402
from ..data.pseudo_labels import load_pseudo_labels  # noqa: E402
from ..data.registry import parse_dataset_entry  # noqa: E402
from ..data.voc import SYNTHETIC_DATASETS  # noqa: E402
from ..detection.selection import EVERY_IMAGE, output_paths  # noqa: E402
from ..engine import setup  # noqa: E402
from ..engine.config_check import check_imagescore_config  # noqa: E402
from ..engine.hooks import EVALUATIONS_FILE  # noqa: E402
from ..evaluation.evaluators import COCO_STYLE_KEY  # noqa: E402
from ..evaluation.pseudo_label_quality import pseudo_label_file_quality  # noqa: E402
from ..utils.io import atomic_write  # noqa: E402
from .summary import (  # noqa: E402
    DEFAULT_FINAL_EVALS,
    DEFAULT_METRIC,
    add_metric_argument,
    control_drift,
    detectable_note,
    drift_note,
    noise_note,
    per_seed,
    plot_curves,
    plot_selection_curve,
    summarize,
    write_per_seed,
    write_runs,
    write_summary,
)

__all__ = [
    "ARMS",
    "ARM_SETTINGS",
    "MEAN_TEACHER_ARMS",
    "TEACHER",
    "selects_fraction",
    "arm_runs",
    "run_name",
    "parse_study_args",
    "study_config",
    "data_seeds_of",
    "arm_eval_period",
    "run_opts",
    "evaluations",
    "protocol_note",
    "Study",
    "run_study",
]

#: Arm -> the IMAGESCORE.SELECTION its swap uses (None: an arm without a swap).
ARMS = {
    "control": None,
    "imagescore": "image_score",
    "boxscore": "image_score",
    "boxscore_x_confidence": "image_score",
    "boxfilter": "box_filter",
    "confidence": "confidence",
    "random": "random",
    "all": "all",
    "oracle": None,
}
#: Arm -> its KEY VALUE settings beside the selection: the scoring mode it ranks or filters by.
ARM_SETTINGS = {
    "imagescore": ["IMAGESCORE.SCORE_MODE", "image"],
    "boxscore": ["IMAGESCORE.SCORE_MODE", "box", "IMAGESCORE.BOX.RANKING", "score"],
    "boxscore_x_confidence": [
        "IMAGESCORE.SCORE_MODE",
        "box",
        "IMAGESCORE.BOX.RANKING",
        "score_x_confidence",
    ],
    "boxfilter": ["IMAGESCORE.SCORE_MODE", "box"],
}
#: Arm -> the IMAGESCORE.MEAN_TEACHER.GATE of its online mean teacher (REGIME mean_teacher), which
#: starts from the same burn-in checkpoint and runs the same iterations as the swap arms.
MEAN_TEACHER_ARMS = {
    "mean_teacher": "none",
    "mean_teacher_image": "image",
    "mean_teacher_box": "box",
}
TEACHER = "teacher"
#: The runs that never read an unlabelled image, and the settings that shape only the unlabelled
#: split of a synthetic set (its labelled and test splits are the same whatever they are): such a run
#: is the same run whatever those settings are, so a clean and an uncurated study share it.
LABELLED_ONLY_RUNS = (TEACHER, "control")
UNLABELLED_ONLY_KEYS = (
    "IMAGESCORE.SYNTHETIC.DISTRACTOR_FRACTION",
    "IMAGESCORE.SYNTHETIC.DISTRACTORS",
)
TEACHER_CHECKPOINT = "teacher.pth"
DONE = "done.json"
#: Where the evaluator of a VOC-format test set puts its COCO-style AP50.
COCO_STYLE_AP50 = COCO_STYLE_KEY + "/AP50"


def selects_fraction(arm: str) -> bool:
    """Whether the arm keeps IMAGESCORE.SELECT_FRACTION of the unlabelled set (not every image, nor none)."""
    return ARMS.get(arm) not in (None,) + EVERY_IMAGE


def arm_runs(arms: Sequence[str], fractions=None) -> List[Tuple[str, Optional[float]]]:
    """(arm, fraction) of every run from a teacher: with ``fractions``, each arm that selects a
    fraction at each of them; the other arms, and every arm without ``fractions``, once (None: the
    config's SELECT_FRACTION)."""
    return [
        (arm, fraction)
        for arm in arms
        for fraction in (fractions if fractions and selects_fraction(arm) else [None])
    ]


def run_name(arm: str, fraction: Optional[float] = None) -> str:
    """The run's folder name: the arm, with ``_f<fraction>`` for a run at one of --fractions."""
    return arm if fraction is None else "%s_f%g" % (arm, fraction)


def data_seeds_of(args) -> list:
    """The study's data seeds: ``args.data_seeds``, or [None] (the config's) where none is given."""
    seeds = list(getattr(args, "data_seeds", None) or [None])
    if len(set(seeds)) != len(seeds):
        raise ValueError("--data-seeds lists a seed twice: %s" % seeds)
    return seeds


def parse_study_args(argv=None, description: str = ""):
    """tools/ssod_study.py's command line (``description``: its help text), checked."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
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
        choices=list(ARMS) + list(MEAN_TEACHER_ARMS),
        help="arms to run from each teacher",
    )
    parser.add_argument(
        "--data-seeds",
        type=int,
        nargs="+",
        default=None,
        help="IMAGESCORE.SYNTHETIC.SEED of each synthetic set to run the grid on (default: the config's)",
    )
    parser.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        default=None,
        help="run every arm that selects a fraction at each of these IMAGESCORE.SELECT_FRACTION values "
        "(a selection curve, selection_curve.png); the other arms run once",
    )
    parser.add_argument(
        "--final-evals",
        type=int,
        default=DEFAULT_FINAL_EVALS,
        help="a run's final AP50 is the mean of its last N evaluations after the swap (default 3)",
    )
    add_metric_argument(parser)
    parser.add_argument(
        "--output-dir", required=True, metavar="DIR", help="where the runs and the tables go"
    )
    parser.add_argument(
        "--jobs", type=int, default=2, help="training processes at a time (default 2)"
    )
    parser.add_argument(
        "--reuse-from",
        default=None,
        metavar="DIR",
        help="another study's --output-dir, in the same layout: its finished teachers and controls, "
        "which read no unlabelled image, are linked in and reused where they trained as this "
        "command's would (a clean and an uncurated pool share them)",
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
        "--only-finished",
        action="store_true",
        help="train nothing: write the tables from the runs that have finished (a study under way)",
    )
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="KEY VALUE config overrides shared by every run",
    )
    args = parser.parse_args(argv)
    if min(args.jobs, args.threads, args.final_evals) < 1:
        parser.error("--jobs, --threads and --final-evals must be at least 1")
    fractions = args.fractions or []
    if any(not 0 < f <= 1 for f in fractions) or len(set(fractions)) != len(fractions):
        parser.error("--fractions must be distinct values in (0, 1], got %s" % fractions)
    return args


def study_config(args, data_seed=None):
    """The shared config (file + opts + ``data_seed``, None: the config's), set up as every tool's
    (datasets of IMAGESCORE.REGISTER_DATASETS registered, the synthetic set generated) and checked
    for what the study needs. Returns it and the opts every run gets."""
    opts = list(args.opts) + (
        ["IMAGESCORE.SYNTHETIC.SEED", str(data_seed)] if data_seed is not None else []
    )
    cfg = setup(argparse.Namespace(config_file=args.config_file, opts=opts))
    if cfg.IMAGESCORE.REGIME != "swap":
        raise ValueError(
            "IMAGESCORE.REGIME is %r: the study's arms swap (its control sets labelled_only itself)"
            % cfg.IMAGESCORE.REGIME
        )
    swap, end = cfg.IMAGESCORE.SWAP_ITER, cfg.SOLVER.MAX_ITER
    if not 0 < swap < end:
        raise ValueError(
            "IMAGESCORE.SWAP_ITER=%d must lie inside (0, SOLVER.MAX_ITER=%d)" % (swap, end)
        )
    arm_eval_period(cfg)  # refuses a schedule the arms cannot be evaluated on
    if not cfg.DATASETS.TEST:
        raise ValueError("DATASETS.TEST is empty: the study evaluates every arm on it")
    used = (
        set(cfg.DATASETS.TRAIN) | set(cfg.DATASETS.TEST) | set(cfg.IMAGESCORE.UNLABELLED_DATASETS)
    )
    if data_seed is not None and not used & set(SYNTHETIC_DATASETS):
        raise ValueError(
            "--data-seeds sets IMAGESCORE.SYNTHETIC.SEED, but the config reads no synthetic set "
            "(it reads %s): leave --data-seeds out" % ", ".join(sorted(used))
        )
    return cfg, opts


def arm_eval_period(cfg) -> int:
    """The arms' TEST.EVAL_PERIOD: the config's if it gives 3 evaluations after the swap, else a third of
    the post-swap phase. It must divide SWAP_ITER, so that the arms are evaluated at the same
    iterations after the swap."""
    swap, end, period = cfg.IMAGESCORE.SWAP_ITER, cfg.SOLVER.MAX_ITER, cfg.TEST.EVAL_PERIOD
    if period <= 0 or (end - swap) // period < 3:
        period = (end - swap) // 3
    if period <= 0 or swap % period:
        raise ValueError(
            "the arms need TEST.EVAL_PERIOD=%d to divide IMAGESCORE.SWAP_ITER=%d and fit 3 times "
            "into the %d iterations after it: set TEST.EVAL_PERIOD" % (period, swap, end - swap)
        )
    return period


def run_opts(cfg, opts, seed: int, name: str, output_dir: str, fraction: Optional[float] = None):
    """The KEY VALUE list of one run: the shared opts, then what makes it this seed's teacher or arm
    (at IMAGESCORE.SELECT_FRACTION ``fraction``, where given)."""
    own = ["SEED", str(seed), "OUTPUT_DIR", output_dir]
    never = ["IMAGESCORE.REGIME", "labelled_only"]
    if (
        name == TEACHER
    ):  # labelled only, to the swap; evaluated once, there: the arms' curves start there
        own += never + ["SOLVER.MAX_ITER", str(cfg.IMAGESCORE.SWAP_ITER), "TEST.EVAL_PERIOD", "0"]
    else:
        own += ["TEST.EVAL_PERIOD", str(arm_eval_period(cfg))]
    if name == "control":
        own += never
    elif name == "oracle":
        own += never + [
            "DATASETS.TRAIN",
            repr(tuple(cfg.DATASETS.TRAIN) + tuple(cfg.IMAGESCORE.UNLABELLED_DATASETS)),
        ]
    elif ARMS.get(name):
        own += ["IMAGESCORE.SELECTION", ARMS[name]] + ARM_SETTINGS.get(name, [])
    elif name in MEAN_TEACHER_ARMS:
        own += ["IMAGESCORE.REGIME", "mean_teacher"]
        own += ["IMAGESCORE.MEAN_TEACHER.GATE", MEAN_TEACHER_ARMS[name]]
    if fraction is not None:
        own += ["IMAGESCORE.SELECT_FRACTION", repr(float(fraction))]
    return list(opts) + own


def evaluations(output_dir: str):
    """``{iterations done: (AP50, AP, COCO-style AP50 or None)}`` from the run's evaluation log
    (:class:`~imagescore_det.engine.EvaluationLog`; a later line for the same iteration wins).

    AP50 and AP are the Pascal VOC protocol's (``bbox/AP50``, ``bbox/AP``: the paper's metric);
    the COCO-style AP50 by pycocotools (``bbox_coco/AP50``) is kept beside them where the evaluator
    wrote it.
    """
    found = {}
    with open(os.path.join(output_dir, EVALUATIONS_FILE)) as f:
        for line in f:
            record = json.loads(line)
            found[record["iteration"]] = (
                record["bbox/AP50"],
                record["bbox/AP"],
                record.get(COCO_STYLE_AP50),
            )
    return found


def data_fingerprint(cfg) -> list:
    """What identifies the data of a run beyond its config: the size and modification time of every
    file and folder that IMAGESCORE.REGISTER_DATASETS names (a synthetic set is fixed by its config)."""
    found = []
    for entry in cfg.IMAGESCORE.REGISTER_DATASETS:
        for path in parse_dataset_entry(entry).paths:
            info = os.stat(path)
            size = len(os.listdir(path)) if os.path.isdir(path) else info.st_size
            found.append([path, size, info.st_mtime_ns])
    return found


def protocol_note(test_set: str) -> str:
    """summary.md's line on which evaluator the study's AP50 and AP come from: the test set's own."""
    if MetadataCatalog.get(test_set).get("evaluator_type") == "coco":
        return (
            "Evaluator: Detectron2's COCOEvaluator on the COCO-format test set %s: AP50 and AP are its bbox/AP50 "
            "(IoU 0.5) and bbox/AP (IoU 0.50:0.95, 101-point; COCO-style AP); runs.csv's ap50_coco is empty."
            % test_set
        )
    return (
        "Evaluator: Detectron2's PascalVOCDetectionEvaluator on %s: AP50 and AP are its bbox/AP50 (the paper's "
        "metric) and bbox/AP; runs.csv's ap50_coco is the COCO-style AP50 by pycocotools (bbox_coco/AP50), about 3 "
        "points apart on the same model." % test_set
    )


def _flat(node, prefix: str = "") -> dict:
    """``{"A.B.C": value}`` of a nested config dict (as yaml.safe_load reads a dumped CfgNode)."""
    found = {}
    for key, value in node.items():
        if isinstance(value, dict):
            found.update(_flat(value, prefix + key + "."))
        else:
            found[prefix + key] = value
    return found


def default_settings() -> dict:
    """``{"A.B.C": value}`` of Detectron2's defaults with the IMAGESCORE keys at theirs."""
    defaults = get_cfg()
    add_imagescore_config(defaults)
    return _flat(yaml.safe_load(defaults.dump()))


def changed_settings(run_config_file: str, cfg, ignore: Sequence[str] = ()) -> List[str]:
    """The config keys on which a finished run's own config (Detectron2's ``OUTPUT_DIR/config.yaml``)
    differs from ``cfg``, OUTPUT_DIR and ``ignore`` aside. A key the run's config lacks (a key added
    to the project since) counts only where ``cfg`` holds it off its default: the project adds keys
    whose defaults keep the behaviour of before, so such a run trained as ``cfg`` would."""
    with open(run_config_file) as f:
        ran = _flat(yaml.safe_load(f))
    current = _flat(yaml.safe_load(cfg.dump()))
    default = default_settings()

    def differs(key: str) -> bool:
        if key not in current:  # removed since the run
            return True
        if key not in ran:  # added since the run
            return current[key] != default.get(key)
        return ran[key] != current[key]

    ignored = {"OUTPUT_DIR", *ignore}
    return sorted(key for key in set(ran) | set(current) if key not in ignored and differs(key))


def last_error_line(log_file: str) -> str:
    """The last non-empty line of a failed run's log: usually its exception."""
    with open(log_file, errors="replace") as f:
        lines = [line.strip() for line in f if line.strip()]
    return lines[-1] if lines else "(empty log)"


def _remove_run(folder: str) -> None:
    """Remove a run's folder, or the link to another study's run (never that run itself)."""
    if os.path.islink(folder):
        os.unlink(folder)
    else:
        shutil.rmtree(folder, ignore_errors=True)


class Study:
    """Runs teachers and arms as ``train_net`` subprocesses and collects their rows.

    One Study is one data seed's grid (``cfg`` set up with that IMAGESCORE.SYNTHETIC.SEED); its
    runs go to ``args.output_dir/<subfolder>/seed<S>/<run name>`` (``subfolder`` "" where the study
    has one data seed: the layout of a study before data seeds; :func:`run_name`: the arm, with its
    fraction where the run is at one of --fractions). Each run's done.json records a
    fingerprint of everything that shapes it (its config after overrides, arm, seed, data and, for
    an arm, its teacher's fingerprint): a finished run is reused only while that fingerprint holds,
    unless ``args.reuse_stale``; :attr:`stale` lists the runs reused that way.
    """

    def __init__(self, args, cfg, opts, train_net: str, subfolder: str = ""):
        self.args, self.cfg, self.opts, self.train_net = args, cfg, opts, train_net
        self.data_seed = cfg.IMAGESCORE.SYNTHETIC.SEED
        self.subfolder = subfolder
        self.root = os.path.join(os.path.abspath(args.output_dir), subfolder)
        self.truth = None  # the unlabelled set's ground truth: load_truth(), while it is registered
        self.stale: List[str] = []

    def folder(self, seed: int, name: str, fraction: Optional[float] = None) -> str:
        return os.path.join(self.root, "seed%d" % seed, run_name(name, fraction))

    def label(self, seed: int, name: str, fraction: Optional[float] = None) -> str:
        """``[data<D>/]seed<S>/<run name>``: the run's folder under --output-dir."""
        return os.path.join(self.subfolder, "seed%d" % seed, run_name(name, fraction))

    def load_truth(self) -> None:
        """Read the unlabelled set's ground truth now, while this data seed's set is the one
        registered under its names (the next data seed's setup registers its own there)."""
        self.truth = ground_truth_of(self.cfg.IMAGESCORE.UNLABELLED_DATASETS)

    def run_config(self, seed: int, name: str, fraction: Optional[float] = None):
        """The config one run trains with, checked as train_net checks it (before any run starts)."""
        opts = run_opts(
            self.cfg, self.opts, seed, name, self.folder(seed, name, fraction), fraction
        )
        cfg = build_config(self.args.config_file, opts)
        try:
            check_imagescore_config(cfg, training=True)
        except ValueError as error:
            raise ValueError("%s: %s" % (self.label(seed, name, fraction), error)) from error
        return cfg

    def fingerprint(self, seed: int, name: str, fraction: Optional[float] = None) -> str:
        cfg = self.run_config(seed, name, fraction).clone()
        cfg.defrost()
        cfg.OUTPUT_DIR = ""  # the same run wherever the study folder is
        if name in LABELLED_ONLY_RUNS:  # the same run whatever the unlabelled split holds
            default = default_settings()
            cfg.merge_from_list(
                [item for key in UNLABELLED_ONLY_KEYS for item in (key, default[key])]
            )
        shaped_by = {"config": cfg.dump(), "arm": name, "seed": seed, "data": data_fingerprint(cfg)}
        if name != TEACHER:
            shaped_by["teacher"] = self.fingerprint(seed, TEACHER)
        return hashlib.sha256(json.dumps(shaped_by, sort_keys=True).encode()).hexdigest()

    def same_settings(self, seed: int, name: str, fraction: Optional[float] = None) -> bool:
        """Whether a finished run whose fingerprint differs trained with this command's settings all
        the same (:func:`changed_settings` finds nothing for it and, for an arm, for its teacher):
        its fingerprint was taken before keys were added. Only where the data is a synthetic set,
        which its config fixes."""
        cfg = self.run_config(seed, name, fraction)
        saved = os.path.join(self.folder(seed, name, fraction), "config.yaml")
        ignore = UNLABELLED_ONLY_KEYS if name in LABELLED_ONLY_RUNS else ()
        if (
            data_fingerprint(cfg)
            or not os.path.isfile(saved)
            or changed_settings(saved, cfg, ignore)
        ):
            return False
        return name == TEACHER or self.same_settings(seed, TEACHER)

    def finished(self, seed: int, name: str, fraction: Optional[float] = None) -> Optional[dict]:
        """The done.json record of a run that need not train again (its fingerprint holds, its
        settings are the same, or ``args.reuse_stale``); None for one that must."""
        done = os.path.join(self.folder(seed, name, fraction), DONE)
        if not os.path.isfile(done) and name in LABELLED_ONLY_RUNS:
            self.link_shared(seed, name)
        if not os.path.isfile(done):
            return None
        with open(done) as f:
            record = json.load(f)
        if record.get("fingerprint") == self.fingerprint(
            seed, name, fraction
        ) or self.same_settings(seed, name, fraction):
            return record
        if self.args.reuse_stale:
            self.stale.append(self.label(seed, name, fraction))
            return record
        return None

    def link_shared(self, seed: int, name: str) -> None:
        """Link the finished run ``name`` (a teacher or control) of the study in ``args.reuse_from``
        in place of this study's unfinished one; :meth:`finished` then judges it as its own (a
        link that does not hold is removed before training)."""
        if not getattr(self.args, "reuse_from", None):
            return
        other = os.path.join(
            os.path.abspath(self.args.reuse_from), self.subfolder, "seed%d" % seed, name
        )
        folder = self.folder(seed, name)
        if os.path.realpath(other) == os.path.realpath(folder) or not os.path.isfile(
            os.path.join(other, DONE)
        ):
            return
        _remove_run(folder)
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        os.symlink(other, folder)

    def train(self, seed: int, name: str, fraction: Optional[float] = None):
        """Run (or reuse) one training (at ``fraction``, where given); return its done.json record."""
        record = self.finished(seed, name, fraction)
        if record is not None:
            return record
        folder = self.folder(seed, name, fraction)
        done = os.path.join(folder, DONE)
        fingerprint = self.fingerprint(seed, name, fraction)
        _remove_run(folder)  # unfinished or stale: starts over from its teacher
        os.makedirs(folder)
        command = [sys.executable, self.train_net, "--config-file", self.args.config_file]
        if name != TEACHER:  # resumes the teacher: its iteration, optimizer and LR schedule
            shutil.copyfile(
                os.path.join(self.folder(seed, TEACHER), "model_final.pth"),
                os.path.join(folder, TEACHER_CHECKPOINT),
            )
            Checkpointer(torch.nn.Module(), save_dir=folder).tag_last_checkpoint(TEACHER_CHECKPOINT)
            command.append("--resume")
        command += run_opts(self.cfg, self.opts, seed, name, folder, fraction)
        env = dict(
            os.environ,
            OMP_NUM_THREADS=str(self.args.threads),
            MKL_NUM_THREADS=str(self.args.threads),
        )
        start = time.time()
        with open(os.path.join(folder, "stdout.log"), "w") as log:
            code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        if code:
            log_file = os.path.join(folder, "stdout.log")
            raise RuntimeError(
                "%s failed (exit %d): %s; see %s"
                % (self.label(seed, name, fraction), code, last_error_line(log_file), log_file)
            )
        record = {
            "fingerprint": fingerprint,
            "command": shlex.join(command),
            "seconds": round(time.time() - start, 1),
            "evaluations": evaluations(folder),
        }
        if ARMS.get(name):
            record["pseudo_labels"] = self.pseudo_label_quality(folder)
        with atomic_write(done) as f:
            json.dump(record, f, indent=1)
        with open(done) as f:
            return json.load(f)  # JSON's view (string keys), the same as a reused run's

    def pseudo_label_quality(self, folder: str):
        if self.truth is None:
            self.load_truth()
        paths = output_paths(self.cfg, folder)
        payload = load_pseudo_labels(paths["pseudo_labels"])
        return pseudo_label_file_quality(payload, self.truth)

    def rows(self, seed: int, arm: str, teacher, record, fraction: Optional[float] = None):
        """runs.csv rows of one arm: the teacher's evaluations up to the swap, then the arm's; the
        fraction column holds the SELECT_FRACTION of an arm that selects one."""
        swap = self.cfg.IMAGESCORE.SWAP_ITER
        if not selects_fraction(arm):
            fraction = ""
        elif fraction is None:
            fraction = self.cfg.IMAGESCORE.SELECT_FRACTION
        stats = record.get("pseudo_labels", {})
        points = {int(k): (v, {}) for k, v in teacher["evaluations"].items() if int(k) <= swap}
        points.update(
            {int(k): (v, stats) for k, v in record["evaluations"].items() if int(k) > swap}
        )
        return [
            dict(
                extra,
                arm=arm,
                fraction=fraction,
                data_seed=self.data_seed,
                seed=seed,
                iteration=it,
                ap50=values[0],
                ap=values[1],
                ap50_coco=(list(values) + [None])[2],
            )
            for it, (values, extra) in sorted(points.items())
        ]


def run_study(args, command: str, train_net: str):
    """Train everything not yet done (``--jobs`` at a time) with the script ``train_net``
    (tools/train_net.py), for every data seed of ``args.data_seeds``, then write the tables (pooled
    over the data seeds and per data seed) and the plots (with ``args.fractions``, the selection
    curve too)."""
    started = time.time()
    data_seeds = data_seeds_of(args)
    final_evals = getattr(args, "final_evals", DEFAULT_FINAL_EVALS)
    fractions = getattr(args, "fractions", None)
    runs = arm_runs(args.arms, fractions)
    studies = []
    for data_seed in data_seeds:  # each set generated here, before the runs read it in parallel
        cfg, opts = study_config(args, data_seed)
        subfolder = "data%d" % cfg.IMAGESCORE.SYNTHETIC.SEED if len(data_seeds) > 1 else ""
        study = Study(args, cfg, opts, train_net, subfolder)
        for seed in args.seeds:  # every run's settings checked before the first one trains
            for name, fraction in [(TEACHER, None)] + runs:
                study.run_config(seed, name, fraction)
        if any(ARMS.get(arm) for arm in args.arms):
            study.load_truth()  # while this data seed's set is the registered one
        studies.append(study)
    cfg = studies[0].cfg  # the schedule is the same on every data seed
    os.makedirs(os.path.abspath(args.output_dir), exist_ok=True)
    progress = tqdm(
        total=len(studies) * len(args.seeds) * (1 + len(runs)), desc="ssod study", unit="run"
    )

    only_finished = getattr(args, "only_finished", False)

    def job(study, seed, name, fraction=None, teacher_future=None):
        if teacher_future is not None and teacher_future.result() is None:
            progress.update()  # (submitted earlier, so already running or done: no deadlock)
            return None  # --only-finished, and its teacher has not finished
        record = (study.finished if only_finished else study.train)(seed, name, fraction)
        progress.update()
        if record is None:
            return None
        progress.write(
            "%-24s done (%.0f s): AP50 %s"
            % (
                study.label(seed, name, fraction),
                record["seconds"],
                ", ".join(
                    "%s: %.1f" % (k, v[0])
                    for k, v in sorted(record["evaluations"].items(), key=lambda kv: int(kv[0]))
                ),
            )
        )
        return record

    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        teachers = {
            (k, seed): pool.submit(job, study, seed, TEACHER)
            for k, study in enumerate(studies)
            for seed in args.seeds
        }
        arms = {
            (k, seed, arm, fraction): pool.submit(
                job, study, seed, arm, fraction, teachers[(k, seed)]
            )
            for k, study in enumerate(studies)
            for seed in args.seeds
            for arm, fraction in runs
        }
        rows = [
            row
            for (k, seed, arm, fraction), future in arms.items()
            if future.result() is not None
            for row in studies[k].rows(
                seed, arm, teachers[(k, seed)].result(), future.result(), fraction
            )
        ]
        unfinished = [
            studies[k].label(seed, arm, fraction)
            for (k, seed, arm, fraction), future in arms.items()
            if future.result() is None
        ]
    progress.close()
    if not rows:
        raise RuntimeError("--only-finished: no arm of this study has finished yet")
    root = os.path.abspath(args.output_dir)
    swap = cfg.IMAGESCORE.SWAP_ITER
    metric = getattr(args, "metric", DEFAULT_METRIC)
    summary = summarize(rows, swap_iter=swap, final_evals=final_evals, metric=metric)
    write_runs(os.path.join(root, "runs.csv"), rows)
    write_per_seed(
        os.path.join(root, "per_seed.csv"),
        per_seed(rows, swap_iter=swap, final_evals=final_evals, metric=metric),
    )
    done = [f.result() for f in list(teachers.values()) + list(arms.values())]
    trained = sum(record["seconds"] for record in done if record is not None)
    protocol = protocol_note(cfg.DATASETS.TEST[0])
    seeds_note = "Data seeds (IMAGESCORE.SYNTHETIC.SEED): %s; training seeds: %s." % (
        ", ".join(str(study.data_seed) for study in studies),
        ", ".join(str(seed) for seed in args.seeds),
    )
    note = (
        "Wall time of this command: %.1f min (%d processes at a time, %d thread(s) each); the runs' own times add up to %.1f min."
        % ((time.time() - started) / 60, args.jobs, args.threads, trained / 60)
    )
    if unfinished:
        note += " Tables from the finished runs only (--only-finished); not finished yet: %s." % (
            ", ".join(unfinished)
        )
    linked = [
        study.label(seed, name)
        for study in studies
        for seed in args.seeds
        for name in LABELLED_ONLY_RUNS
        if os.path.islink(study.folder(seed, name))
    ]
    if linked:
        note += " Linked in from --reuse-from %s (trained there; their times are counted): %s." % (
            args.reuse_from,
            ", ".join(linked),
        )
    stale = [label for study in studies for label in study.stale]
    if stale:
        note += (
            " Reused with --reuse-stale, although their settings differ from this command's: %s."
            % ", ".join(stale)
        )
    detectable = detectable_note(summary)
    write_summary(
        summary,
        os.path.join(root, "summary.csv"),
        os.path.join(root, "summary.md"),
        command=command,
        notes=[
            seeds_note,
            detectable,
            noise_note(rows, swap),
            protocol,
            drift_note(control_drift(rows, swap), swap),
            note,
        ],
        final_evals=final_evals,
    )
    plot_curves(
        rows,
        os.path.join(root, "ap50_curves.png"),
        swap_iter=swap,
        title="AP50 against iteration (%d data seed(s) x %d seeds)"
        % (len(studies), len(args.seeds)),
    )
    written = ["runs.csv", "per_seed.csv", "summary.csv", "summary.md", "ap50_curves.png"]
    if fractions:
        plot_selection_curve(
            summary,
            os.path.join(root, "selection_curve.png"),
            title="Final AP50 against SELECT_FRACTION (%d data seed(s) x %d seeds)"
            % (len(studies), len(args.seeds)),
        )
        written.append("selection_curve.png")
    print("Wrote %s to %s (%.0f s)" % (", ".join(written), root, time.time() - started))
    with open(os.path.join(root, "summary.md")) as f:
        print(f.read())
    print(detectable)
    return summary
