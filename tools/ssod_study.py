#!/usr/bin/env python
"""Side-by-side study of semi-supervised arms from one teacher per seed (issue 9).

Per seed, tools/train_net.py trains the teacher once, on the labelled set, to IMAGESCORE.SWAP_ITER.
Every arm then continues from that checkpoint (same iteration, optimizer and LR schedule: it is
copied into the arm's folder as its last checkpoint and resumed) to SOLVER.MAX_ITER, with the
same settings except:

    control     labelled images only (the swap never happens)
    imagescore  the swap keeps the top SELECT_FRACTION by image score    (IMAGESCORE.SELECTION image_score)
    confidence  ... by mean detection confidence                         (IMAGESCORE.SELECTION confidence)
    random      ... drawn at random with the run's SEED                   (IMAGESCORE.SELECTION random)
    all         every unlabelled image pseudo-labelled, STAC-style       (IMAGESCORE.SELECTION all)
    oracle      labelled + the unlabelled set with its ground truth (the fully labelled bound)

Swapping arms swap at the start of their run (the hook's "resumed past SWAP_ITER" path), so the
hook, selection and pseudo-label code are tools/train_net.py's own. Teachers are evaluated at the
swap only; arms at TEST.EVAL_PERIOD, or a third of the post-swap phase where that gives fewer than
3 evaluations after the swap (the period must be a multiple of 20 and divide SWAP_ITER).

Outputs in --output-dir: runs.csv (arm, seed, iteration, AP50, AP and the arm's pseudo-label
images, boxes, precision and recall against the unlabelled set's ground truth), summary.csv and
summary.md (imagescore_det.reports.study: paired delta vs control, one-sided paired t-test,
gap closed), ap50_curves.png, and one folder per run (seed<S>/<arm>, with its stdout.log). A run
with a done.json is not run again when the command is repeated. Example::

    python tools/ssod_study.py --config-file configs/demo_ssl.yaml --seeds 0 1 2 \\
        --arms control imagescore confidence random all oracle --data-seed 1 --output-dir output/study_data1
"""
import argparse
import concurrent.futures
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

from imagescore_det.utils.detectron2_import import require_detectron2_or_help

require_detectron2_or_help(__doc__)

from detectron2.data import DatasetCatalog  # noqa: E402
from tqdm import tqdm  # noqa: E402

from imagescore_det import build_config  # noqa: E402
from imagescore_det.data.pseudo_labels import load_pseudo_labels  # noqa: E402
from imagescore_det.data.voc import prepare_synthetic_data  # noqa: E402
from imagescore_det.engine.evaluation import COCO_STYLE_KEY  # noqa: E402
from imagescore_det.engine.selection import output_paths  # noqa: E402
from imagescore_det.engine.selection_quality import ground_truth_from_dicts, pseudo_label_file_quality  # noqa: E402
from imagescore_det.reports.study import control_drift, drift_note, plot_curves, summarize, write_runs, write_summary  # noqa: E402
from imagescore_det.utils.io import atomic_write  # noqa: E402

TRAIN_NET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_net.py")
#: Arm -> the IMAGESCORE.SELECTION its swap uses (None: an arm without a swap).
ARMS = {"control": None, "imagescore": "image_score", "confidence": "confidence", "random": "random", "all": "all", "oracle": None}
TEACHER = "teacher"
TEACHER_CHECKPOINT = "teacher.pth"
DONE = "done.json"
#: DefaultTrainer's PeriodicWriter period: metrics.json is written every 20 iterations.
WRITER_PERIOD = 20
#: Where the evaluator of a VOC-format test set puts its COCO-style AP50.
COCO_STYLE_AP50 = COCO_STYLE_KEY + "/AP50"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE", help="training config, e.g. configs/demo_ssl.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (cfg.SEED), one teacher each")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS), help="arms to run from each teacher")
    parser.add_argument("--data-seed", type=int, default=None, help="IMAGESCORE.SYNTHETIC.SEED (default: the config's)")
    parser.add_argument("--output-dir", required=True, metavar="DIR", help="where the runs and the tables go")
    parser.add_argument("--jobs", type=int, default=2, help="training processes at a time (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each process (default 1)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE config overrides shared by every run")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.threads < 1:
        parser.error("--jobs and --threads must be at least 1")
    return args


def study_config(args):
    """The shared config (file + opts + data seed), checked for what the study needs."""
    opts = list(args.opts) + (["IMAGESCORE.SYNTHETIC.SEED", str(args.data_seed)] if args.data_seed is not None else [])
    cfg = build_config(args.config_file, opts)
    swap, end = cfg.IMAGESCORE.SWAP_ITER, cfg.SOLVER.MAX_ITER
    if not 0 < swap < end:
        raise ValueError("IMAGESCORE.SWAP_ITER=%d must lie inside (0, SOLVER.MAX_ITER=%d)" % (swap, end))
    arm_eval_period(cfg)  # refuses a schedule the arms cannot be evaluated on
    if not cfg.DATASETS.TEST:
        raise ValueError("DATASETS.TEST is empty: the study evaluates every arm on it")
    return cfg, opts


def arm_eval_period(cfg) -> int:
    """The arms' TEST.EVAL_PERIOD: the config's if it gives 3 evaluations after the swap, else a third of
    the post-swap phase. It must be a multiple of 20 (metrics.json keeps one evaluation per write) and
    divide SWAP_ITER, so that the arms are evaluated at the same iterations after the swap."""
    swap, end, period = cfg.IMAGESCORE.SWAP_ITER, cfg.SOLVER.MAX_ITER, cfg.TEST.EVAL_PERIOD
    if period <= 0 or (end - swap) // period < 3:
        period = (end - swap) // 3
    if period <= 0 or period % WRITER_PERIOD or swap % period:
        raise ValueError(
            "the arms need TEST.EVAL_PERIOD=%d to be a multiple of %d, divide IMAGESCORE.SWAP_ITER=%d and fit 3 times "
            "into the %d iterations after it: set TEST.EVAL_PERIOD" % (period, WRITER_PERIOD, swap, end - swap)
        )
    return period


def run_opts(cfg, opts, seed: int, name: str, output_dir: str):
    """The KEY VALUE list of one run: the shared opts, then what makes it this seed's teacher or arm."""
    own = ["SEED", str(seed), "OUTPUT_DIR", output_dir]
    never = ["IMAGESCORE.SWAP_ITER", str(cfg.SOLVER.MAX_ITER)]  # the hook swaps only before MAX_ITER
    if name == TEACHER:  # evaluated once, at the swap: the arms' curves start there
        own += ["SOLVER.MAX_ITER", str(cfg.IMAGESCORE.SWAP_ITER), "TEST.EVAL_PERIOD", "0"]
    else:
        own += ["TEST.EVAL_PERIOD", str(arm_eval_period(cfg))]
    if name == "control":
        own += never
    elif name == "oracle":
        own += never + ["DATASETS.TRAIN", repr(tuple(cfg.DATASETS.TRAIN) + tuple(cfg.IMAGESCORE.UNLABELLED_DATASETS))]
    elif ARMS.get(name):
        own += ["IMAGESCORE.SELECTION", ARMS[name]]
    return list(opts) + own


def evaluations(output_dir: str, max_iter: int):
    """``{iterations done: (AP50, AP, COCO-style AP50 or None)}`` from Detectron2's metrics.json.

    AP50 and AP are the Pascal VOC protocol's (``bbox/AP50``, ``bbox/AP``: the paper's metric);
    the COCO-style AP50 by pycocotools (``bbox_coco/AP50``) is kept beside them where the evaluator
    wrote it. EvalHook stores a periodic evaluation at iteration ``done - 1`` and the final one at ``max_iter``.
    """
    found = {}
    with open(os.path.join(output_dir, "metrics.json")) as f:
        for line in f:
            record = json.loads(line)
            if "bbox/AP50" in record:
                found[min(record["iteration"] + 1, max_iter)] = (record["bbox/AP50"], record["bbox/AP"], record.get(COCO_STYLE_AP50))
    return found


class Study:
    """Runs teachers and arms as tools/train_net.py subprocesses and collects their rows."""

    def __init__(self, args, cfg, opts):
        self.args, self.cfg, self.opts = args, cfg, opts
        self.root = os.path.abspath(args.output_dir)

    def max_iter(self, name: str) -> int:
        return self.cfg.IMAGESCORE.SWAP_ITER if name == TEACHER else self.cfg.SOLVER.MAX_ITER

    def folder(self, seed: int, name: str) -> str:
        return os.path.join(self.root, "seed%d" % seed, name)

    def train(self, seed: int, name: str):
        """Run (or reuse) one training; return its done.json record."""
        folder = self.folder(seed, name)
        done = os.path.join(folder, DONE)
        if os.path.isfile(done):
            with open(done) as f:
                return json.load(f)
        shutil.rmtree(folder, ignore_errors=True)  # an unfinished run starts over from its teacher
        os.makedirs(folder)
        command = [sys.executable, TRAIN_NET, "--config-file", self.args.config_file]
        if name != TEACHER:
            shutil.copyfile(os.path.join(self.folder(seed, TEACHER), "model_final.pth"), os.path.join(folder, TEACHER_CHECKPOINT))
            with atomic_write(os.path.join(folder, "last_checkpoint")) as f:
                f.write(TEACHER_CHECKPOINT)
            command.append("--resume")
        command += run_opts(self.cfg, self.opts, seed, name, folder)
        env = dict(os.environ, OMP_NUM_THREADS=str(self.args.threads), MKL_NUM_THREADS=str(self.args.threads))
        start = time.time()
        with open(os.path.join(folder, "stdout.log"), "w") as log:
            code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        if code:
            raise RuntimeError("%s of seed %d failed (exit %d); see %s" % (name, seed, code, os.path.join(folder, "stdout.log")))
        record = {"command": shlex.join(command), "seconds": round(time.time() - start, 1), "evaluations": evaluations(folder, self.max_iter(name))}
        if ARMS.get(name):
            record["pseudo_labels"] = self.pseudo_label_quality(folder)
        with atomic_write(done) as f:
            json.dump(record, f, indent=1)
        with open(done) as f:
            return json.load(f)  # JSON's view (string keys), the same as a reused run's

    def pseudo_label_quality(self, folder: str):
        if not hasattr(self, "_truth"):
            names = self.cfg.IMAGESCORE.UNLABELLED_DATASETS
            self._truth = ground_truth_from_dicts([d for name in names for d in DatasetCatalog.get(name)])
        paths = output_paths(self.cfg, folder)
        return pseudo_label_file_quality(load_pseudo_labels(paths["pseudo_labels"]), self._truth)

    def rows(self, seed: int, arm: str, teacher, record):
        """runs.csv rows of one arm: the teacher's evaluations up to the swap, then the arm's."""
        swap = self.cfg.IMAGESCORE.SWAP_ITER
        stats = record.get("pseudo_labels", {})
        points = {int(k): (v, {}) for k, v in teacher["evaluations"].items() if int(k) <= swap}
        points.update({int(k): (v, stats) for k, v in record["evaluations"].items() if int(k) > swap})
        return [
            dict(extra, arm=arm, seed=seed, iteration=it, ap50=values[0], ap=values[1], ap50_coco=(list(values) + [None])[2])
            for it, (values, extra) in sorted(points.items())
        ]


def run_study(args, command: str):
    """Train everything not yet done (``--jobs`` at a time), then write the tables and the plot."""
    started = time.time()
    cfg, opts = study_config(args)
    prepare_synthetic_data(cfg)  # once, here, before the runs read it in parallel
    study = Study(args, cfg, opts)
    os.makedirs(study.root, exist_ok=True)
    progress = tqdm(total=len(args.seeds) * (1 + len(args.arms)), desc="ssod study", unit="run")

    def job(seed, name, teacher_future=None):
        if teacher_future is not None:
            teacher_future.result()  # submitted earlier, so already running or done: no deadlock
        record = study.train(seed, name)
        progress.update()
        progress.write("seed %d %-10s done (%.0f s): AP50 %s" % (
            seed, name, record["seconds"], ", ".join("%s: %.1f" % (k, v[0]) for k, v in sorted(record["evaluations"].items(), key=lambda kv: int(kv[0])))))
        return record

    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        teachers = {seed: pool.submit(job, seed, TEACHER) for seed in args.seeds}
        arms = {(seed, arm): pool.submit(job, seed, arm, teachers[seed]) for seed in args.seeds for arm in args.arms}
        rows = [row for (seed, arm), future in arms.items() for row in study.rows(seed, arm, teachers[seed].result(), future.result())]
    progress.close()
    summary = summarize(rows)
    write_runs(os.path.join(study.root, "runs.csv"), rows)
    trained = sum(r["seconds"] for r in [f.result() for f in teachers.values()] + [f.result() for f in arms.values()])
    protocol = ("AP50 and AP are Detectron2's Pascal VOC protocol (bbox/AP50, the paper's metric); runs.csv's ap50_coco is "
                "the COCO-style AP50 by pycocotools (bbox_coco/AP50), about 3 points apart on the same model.")
    note = "Wall time of this command: %.1f min (%d processes at a time, %d thread(s) each); the runs' own times add up to %.1f min." % (
        (time.time() - started) / 60, args.jobs, args.threads, trained / 60)
    drift = drift_note(control_drift(rows, cfg.IMAGESCORE.SWAP_ITER), cfg.IMAGESCORE.SWAP_ITER)
    write_summary(summary, os.path.join(study.root, "summary.csv"), os.path.join(study.root, "summary.md"), command=command,
                  notes=[protocol, drift, note])
    plot_curves(rows, os.path.join(study.root, "ap50_curves.png"), swap_iter=cfg.IMAGESCORE.SWAP_ITER,
                title="AP50 against iteration (%d seeds)" % len(args.seeds))
    print("Wrote runs.csv, summary.csv, summary.md and ap50_curves.png to %s (%.0f s)" % (study.root, time.time() - started))
    with open(os.path.join(study.root, "summary.md")) as f:
        print(f.read())
    return summary


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    return run_study(parse_args(argv), command="python tools/ssod_study.py " + shlex.join(argv))


if __name__ == "__main__":
    main()
