"""Every finished run of a study evaluated on another test set (``tools/eval_study.py``): the nuclei
study's second, independent test image, or any set a study did not train or choose on.

Each run's ``model_final.pth`` is tested with the run's own config (its ``config.yaml``) and
DATASETS.TEST set to the one dataset, by :meth:`ImageScoreTrainer.test_checkpoint`: train_net's
--eval-only (a mean teacher's run is judged by its teacher, as the study judges it). A run's result
is kept in ``<run>/test_<dataset>.json`` and reused while its checkpoint is unchanged, so the pass
resumes. The results go to ``<study>/test_<dataset>/runs.csv`` in the study's own format, one
evaluation per run at its last iteration, and the study's summary, per-seed table and notes are
written from it by :mod:`.summary` (a run's figure there is that one evaluation). A run that fails
to evaluate is skipped and named in summary.md.
"""

import argparse
import json
import logging
import os
import re
from typing import List, Optional, Tuple

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.evaluation.testing import flatten_results_dict  # noqa: E402

from ..engine import ImageScoreTrainer, setup  # noqa: E402
from ..utils.io import atomic_write  # noqa: E402
from .runner import ARMS, DONE, MEAN_TEACHER_ARMS, TEACHER  # noqa: E402
from .summary import (  # noqa: E402
    DEFAULT_METRIC,
    detectable_note,
    per_seed,
    summarize,
    write_per_seed,
    write_runs,
    write_summary,
)

__all__ = ["StudyRun", "finished_runs", "evaluate_run", "evaluate_study"]

logger = logging.getLogger(__name__)

#: A run: (its folder, arm, fraction or "", data seed, training seed).
StudyRun = Tuple[str, str, object, object, int]

_FRACTION = re.compile(r"^(?P<arm>.+)_f(?P<fraction>[0-9.e+-]+)$")


def _arm_of(name: str) -> Tuple[Optional[str], object]:
    """(arm, fraction or "") of a run folder's name (:func:`.runner.run_name`); (None, "") for a
    folder that is no arm (the teacher, anything else)."""
    arms = set(ARMS) | set(MEAN_TEACHER_ARMS)
    if name in arms:
        return name, ""
    match = _FRACTION.match(name)
    if match and match["arm"] in arms:
        return match["arm"], float(match["fraction"])
    return None, ""


def finished_runs(study_dir: str) -> List[StudyRun]:
    """The arms' runs under ``study_dir`` that finished (their done.json written), in the layout the
    study writes: ``[data<D>/]seed<S>/<run name>``; in the order of the study's arms (control
    first), then fraction, data seed and seed."""
    found = []
    roots = [(study_dir, "")] + [
        (os.path.join(study_dir, name), int(name[4:]))
        for name in sorted(os.listdir(study_dir))
        if re.fullmatch(r"data\d+", name)
    ]
    for root, data_seed in roots:
        for seed_name in sorted(os.listdir(root)):
            if not re.fullmatch(r"seed\d+", seed_name):
                continue
            for name in sorted(os.listdir(os.path.join(root, seed_name))):
                folder = os.path.join(root, seed_name, name)
                arm, fraction = _arm_of(name)
                if (
                    arm is not None
                    and name != TEACHER
                    and os.path.isfile(os.path.join(folder, DONE))
                ):
                    found.append((folder, arm, fraction, data_seed, int(seed_name[4:])))
    order = list(ARMS) + list(MEAN_TEACHER_ARMS)
    return sorted(found, key=lambda run: (order.index(run[1]), str(run[2]), str(run[3]), run[4]))


def evaluate_run(folder: str, dataset: str, opts=()) -> dict:
    """``{"weights", "size", "mtime_ns", "iteration", "ap50", "ap"}`` of the run in ``folder`` on
    ``dataset`` (extra ``opts`` after the run's config), from ``<folder>/test_<dataset>.json``
    where its checkpoint is unchanged since; evaluated, and that file written, otherwise."""
    weights = os.path.join(folder, "model_final.pth")
    if not os.path.isfile(weights):
        raise FileNotFoundError("%s has no model_final.pth to evaluate" % folder)
    info = os.stat(weights)
    result_file = os.path.join(folder, "test_%s.json" % dataset)
    if os.path.isfile(result_file):
        with open(result_file) as f:
            result = json.load(f)
        if (result["size"], result["mtime_ns"]) == (info.st_size, info.st_mtime_ns):
            return result
    cfg = setup(
        argparse.Namespace(
            config_file=os.path.join(folder, "config.yaml"),
            opts=list(opts)
            + [
                "DATASETS.TEST",
                repr((dataset,)),
                "OUTPUT_DIR",
                os.path.join(folder, "test_" + dataset),
            ],
        )
    )
    flat = flatten_results_dict(ImageScoreTrainer.test_checkpoint(cfg, weights))
    result = {
        "weights": weights,
        "size": info.st_size,
        "mtime_ns": info.st_mtime_ns,
        "iteration": cfg.SOLVER.MAX_ITER,
        "ap50": flat["bbox/AP50"],
        "ap": flat["bbox/AP"],
    }
    with atomic_write(result_file) as f:
        json.dump(result, f, indent=1)
    return result


def evaluate_study(
    study_dir: str, dataset: str, opts=(), *, metric: str = DEFAULT_METRIC, progress=None
) -> List[dict]:
    """Evaluate every finished arm of ``study_dir`` on ``dataset`` and write
    ``study_dir/test_<dataset>/`` (runs.csv, per_seed.csv, summary.csv, summary.md); returns the
    summary rows. ``progress`` wraps the list of runs (tqdm)."""
    runs = finished_runs(study_dir)
    if not runs:
        raise FileNotFoundError("%s holds no finished run of a study arm" % study_dir)
    rows, failed = [], []
    for folder, arm, fraction, data_seed, seed in progress(runs) if progress else runs:
        try:
            result = evaluate_run(folder, dataset, opts)
        except Exception as error:  # one bad run is reported, not the pass lost
            logger.warning("Skipping %s: %s", folder, error)
            failed.append("%s (%s)" % (os.path.relpath(folder, study_dir), error))
            continue
        rows.append(
            {
                "arm": arm,
                "fraction": fraction,
                "data_seed": data_seed,
                "seed": seed,
                "iteration": result["iteration"],
                "ap50": result["ap50"],
                "ap": result["ap"],
            }  # fmt: skip
        )
    if not rows:
        raise RuntimeError("no run of %s could be evaluated on %s: %s" % (study_dir, dataset, "; ".join(failed)))  # fmt: skip
    out = os.path.join(study_dir, "test_" + dataset)
    os.makedirs(out, exist_ok=True)
    summary = summarize(rows, final_evals=1, metric=metric)
    write_runs(os.path.join(out, "runs.csv"), rows)
    write_per_seed(os.path.join(out, "per_seed.csv"), per_seed(rows, final_evals=1, metric=metric))
    notes = [
        "Every finished run of %s evaluated once more, its model_final.pth on %s (tools/eval_study.py): "
        "a run's figure is that one evaluation." % (study_dir, dataset),
        detectable_note(summary),
    ]
    if failed:
        notes.append("Skipped, could not be evaluated: %s." % "; ".join(failed))
    write_summary(
        summary,
        os.path.join(out, "summary.csv"),
        os.path.join(out, "summary.md"),
        notes=notes,
        final_evals=1,
    )
    return summary
