"""The arithmetic of the side-by-side study (tools/ssod_study.py): runs.csv in, summary and plot out.

runs.csv holds one row per (arm, data seed, training seed, evaluated iteration):
``arm,data_seed,seed,iteration,ap50,ap`` and the arm's pseudo-label statistics (``distractors_kept``: the
share of the images its selection kept that are distractors, where the set has kinds), and ``fraction``, the
IMAGESCORE.SELECT_FRACTION of an arm that selects a fraction (empty for the others). A *run* is one
(arm, fraction, data seed, training seed); an *arm label* is the arm, ``arm@fraction`` where it has
a fraction (:func:`arm_label`). A runs.csv written before data seeds existed has no ``data_seed``
column and reads as one data seed, the empty value; one without ``fraction``, as no fractions.

**A run's final figure** is the mean AP50 of its last ``final_evals`` (K, default 3) evaluations
after the swap (fewer where it has fewer; its last evaluation where it has none after the swap);
its last evaluation's AP50 is kept beside it (``ap50_last_mean``). Where the swap iteration is not
given, a run's first evaluation is taken as the swap: the study writes each arm's rows from its
teacher's one evaluation, at the swap.

The summary compares each arm label's final figures (AP50, or AP where ``metric`` says so: the
``metric`` column) with the ``control`` arm's on the same
(data seed, training seed) pairs, in one **pooled** row per arm label (every pair of every data
seed) and, where there are two or more data seeds, one row per arm label and data seed:

- ``delta_vs_control``: the mean over the pairs of (arm - control), a paired difference;
- ``p_value``: one-sided paired t-test of "the arm beats control" (``scipy.stats.ttest_1samp`` of
  the per-pair differences against 0, ``alternative="greater"``: the same as ``ttest_rel``); it
  needs two or more pairs and differences that are not all equal, else it is empty. With three
  seeds a sign or permutation test can never go below 0.125, which is why the t-test is used; it
  assumes roughly normal per-pair differences;
- ``ci95_half_width``: the half-width of the 95 % t-interval of that mean difference
  (``t(0.975, n - 1) * sd / sqrt(n)``): differences much smaller than it cannot be told from noise;
- ``delta_vs_random`` and ``p_vs_random``, ``delta_vs_all`` and ``p_vs_all``: the same paired mean
  difference and one-sided test against the ``random`` arm at the row's fraction and against
  ``all`` (a row without a fraction is compared with random's only fraction, where it ran at one);
  empty where there is no such run;
- ``gap_closed``: ``delta_vs_control / (oracle - control)``, the oracle's own paired delta on the
  same data seeds, where an ``oracle`` arm ran; empty otherwise;
- ``neighbour_sd``: the mean over the row's runs of :func:`neighbour_sd`, the sd of AP50 over one
  run's evaluations after the swap (neighbouring checkpoints; control's sits on a plateau, so its
  sd is the evaluation's own noise);
- ``distractors_kept``: the mean over the row's runs of the share of a run's kept images that are
  distractors; empty where the set has no kinds or the arm keeps nothing;
- ``ap_sd``: the sd over the runs of their final AP, beside ``ap50_sd``; ``metric``: the figure of
  every difference above (``ap50``, or ``ap`` on a set whose AP50 is near its ceiling).

**per_seed.csv** (:func:`per_seed`) has one row per run: the figures whose means and paired tests the
summary reports, so a study page can show each seed's values and differences. ``python -m
imagescore_det.study.summary FOLDER ...`` writes it beside each FOLDER/runs.csv (the tool writes it
itself; this is for study folders written before it did).

No Detectron2 here: the tool writes runs.csv, this module reads it (and so does its test).
"""

import argparse
import csv
import math
import os
import sys
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..utils.io import atomic_write

__all__ = [
    "RUN_COLUMNS",
    "SUMMARY_COLUMNS",
    "PER_SEED_COLUMNS",
    "POOLED",
    "DEFAULT_FINAL_EVALS",
    "METRICS",
    "DEFAULT_METRIC",
    "add_metric_argument",
    "read_runs",
    "write_runs",
    "run_key",
    "arm_label",
    "distractor_shares",
    "final_ap50",
    "neighbour_sd",
    "summarize",
    "per_seed",
    "write_per_seed",
    "control_drift",
    "drift_note",
    "noise_note",
    "detectable_note",
    "write_summary",
    "plot_curves",
    "plot_selection_curve",
    "main",
]

RUN_COLUMNS = [
    "arm",
    "data_seed",
    "seed",
    "iteration",
    "ap50",
    "ap",
    "ap50_coco",
    "images",
    "boxes",
    "precision",
    "recall",
    "distractors_kept",
    "fraction",
]
SUMMARY_COLUMNS = [
    "arm",
    "fraction",
    "data_seed",
    "seeds",
    "iteration",
    "ap50_mean",
    "ap50_sd",
    "ap50_last_mean",
    "ap_mean",
    "ap_sd",
    "delta_vs_control",
    "p_value",
    "ci95_half_width",
    "delta_vs_random",
    "p_vs_random",
    "delta_vs_all",
    "p_vs_all",
    "gap_closed",
    "neighbour_sd",
    "distractors_kept",
    "metric",
]
#: The figures a study can compare arms by (``metric``): the column of runs.csv it is, and what it is.
METRICS = {"ap50": "AP50 (IoU 0.5)", "ap": "AP (IoU 0.50:0.95)"}
#: The figure of the project's studies; the nuclei study compares by COCO-style AP (its AP50 is near
#: its ceiling).
DEFAULT_METRIC = "ap50"
#: per_seed.csv: one row per run (arm label, data seed, training seed); see :func:`per_seed`.
PER_SEED_COLUMNS = [
    "arm",
    "fraction",
    "data_seed",
    "seed",
    "iteration",
    "evals",
    "ap50_at_swap",
    "ap50",
    "ap50_last",
    "ap",
    "drift_after_swap",
    "delta_vs_control",
    "delta_vs_random",
    "delta_vs_all",
    "images",
    "boxes",
    "precision",
    "recall",
]
#: The pseudo-label statistics of a run that per_seed.csv keeps (runs.csv's columns).
_PSEUDO_LABEL_COLUMNS = ("images", "boxes", "precision", "recall")
#: ``data_seed`` of a summary row that pools every data seed.
POOLED = "pooled"
#: How many of a run's last evaluations after the swap its final figure averages.
DEFAULT_FINAL_EVALS = 3

#: A run: (data seed, training seed); the data seed is "" in a runs.csv without the column.
RunKey = Tuple[object, int]


def _data_seed(value) -> object:
    """runs.csv's data_seed cell: an int, or "" where it is empty or the column is missing."""
    if value is None or str(value).strip() == "":
        return ""
    return int(value)


def _fraction(value) -> object:
    """runs.csv's fraction cell: a float, or "" where it is empty or the column is missing."""
    if value is None or str(value).strip() == "":
        return ""
    return float(value)


def _number(value) -> float:
    """A statistic's cell as a float; NaN where it is empty or missing."""
    if value is None or str(value).strip() == "":
        return float("nan")
    return float(value)


def read_runs(path: str) -> List[Dict[str, object]]:
    """runs.csv as dicts: data_seed, seed and iteration as int (data_seed "" where the file has no
    such column or the cell is empty), AP values and fraction as float (fraction "" likewise);
    refuses missing columns."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [
            c
            for c in ("arm", "seed", "iteration", "ap50", "ap")
            if c not in (reader.fieldnames or [])
        ]
        if missing:
            raise ValueError("%s lacks the column(s) %s" % (path, ", ".join(missing)))
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                rows.append(
                    dict(
                        row,
                        data_seed=_data_seed(row.get("data_seed")),
                        seed=int(row["seed"]),
                        iteration=int(row["iteration"]),
                        ap50=float(row["ap50"]),
                        ap=float(row["ap"]),
                        fraction=_fraction(row.get("fraction")),
                    )
                )
            except ValueError as error:
                raise ValueError("%s line %d: %s" % (path, line, error)) from error
    return rows


def write_runs(path: str, rows: Sequence[Mapping[str, object]]) -> None:
    with atomic_write(path, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=RUN_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def run_key(row: Mapping[str, object]) -> RunKey:
    """(data seed, training seed) of a runs.csv row; data seed "" where the row has none."""
    return (row.get("data_seed", ""), row["seed"])


def arm_label(arm: str, fraction="") -> str:
    """``arm``, or ``arm@fraction`` for an arm run at a selection fraction."""
    fraction = _fraction(fraction)
    return arm if fraction == "" else "%s@%g" % (arm, fraction)


def _label_of(row: Mapping[str, object]) -> str:
    return arm_label(row["arm"], row.get("fraction", ""))


def _runs(rows: Sequence[Mapping[str, object]]) -> Dict[str, Dict[RunKey, List[Mapping]]]:
    """``{arm label: {run key: its rows by iteration}}``, labels and runs in the order they first appear."""
    runs: Dict[str, Dict[RunKey, List[Mapping]]] = {}
    for row in rows:
        runs.setdefault(_label_of(row), {}).setdefault(run_key(row), []).append(row)
    for by_run in runs.values():
        for key in by_run:
            by_run[key] = sorted(by_run[key], key=lambda r: r["iteration"])
    return runs


def _after_swap(points: Sequence[Mapping], swap_iter: Optional[int]) -> List[Mapping]:
    """A run's evaluations after the swap (``swap_iter`` None: after its first evaluation)."""
    swap = points[0]["iteration"] if swap_iter is None else swap_iter
    return [row for row in points if row["iteration"] > swap]


def final_ap50(
    rows: Sequence[Mapping[str, object]],
    swap_iter: Optional[int] = None,
    final_evals: int = DEFAULT_FINAL_EVALS,
) -> Dict[str, Dict[RunKey, Dict[str, float]]]:
    """``{arm label: {(data seed, seed): final figures}}``: ``ap50`` and ``ap``, the means over the run's last
    ``final_evals`` evaluations after ``swap_iter`` (its last evaluation alone where none is after
    it); ``ap50_last``, its last evaluation's AP50; ``iteration``, that evaluation's; ``evals``, how
    many evaluations the means took."""
    if final_evals < 1:
        raise ValueError("final_evals must be at least 1, not %d" % final_evals)
    final: Dict[str, Dict[RunKey, Dict[str, float]]] = {}
    for arm, by_run in _runs(rows).items():
        for key, points in by_run.items():
            last = (_after_swap(points, swap_iter) or points[-1:])[-final_evals:]
            final.setdefault(arm, {})[key] = {
                "ap50": float(np.mean([row["ap50"] for row in last])),
                "ap": float(np.mean([row["ap"] for row in last])),
                "ap50_last": float(points[-1]["ap50"]),
                "iteration": points[-1]["iteration"],
                "evals": len(last),
            }
    return final


def neighbour_sd(
    rows: Sequence[Mapping[str, object]], swap_iter: Optional[int] = None
) -> Dict[Tuple[str, object, int], float]:
    """``{(arm label, data seed, seed): sd (ddof 1) of the run's AP50 over its evaluations after the swap}``:
    how much one evaluation moves between neighbouring checkpoints of one run. On the control, at a
    plateau, that is the evaluation's own noise. NaN for a run with fewer than two such evaluations."""
    found = {}
    for arm, by_run in _runs(rows).items():
        for (data_seed, seed), points in by_run.items():
            values = [row["ap50"] for row in _after_swap(points, swap_iter)]
            found[(arm, data_seed, seed)] = (
                float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
            )
    return found


def _at_swap(points: Sequence[Mapping], swap_iter: Optional[int]) -> float:
    """A run's AP50 at the swap (``swap_iter`` None: its first evaluation); NaN where it has none."""
    swap = points[0]["iteration"] if swap_iter is None else swap_iter
    values = [row["ap50"] for row in points if row["iteration"] == swap]
    return values[-1] if values else float("nan")


def _largest_move(points: Sequence[Mapping], swap_iter: Optional[int]) -> float:
    """Largest |AP50 - AP50 at the swap| over a run's evaluations after the swap (``points`` by
    iteration); NaN without evaluations at and after it."""
    at_swap = _at_swap(points, swap_iter)
    moves = [abs(row["ap50"] - at_swap) for row in _after_swap(points, swap_iter)]
    return max(moves, default=float("nan"))


def _run_statistic(
    rows: Sequence[Mapping[str, object]], column: str
) -> Dict[str, Dict[RunKey, float]]:
    """``{arm label: {run key: the first value of ``column`` on its rows}}`` of the runs whose rows
    record it (a run's pseudo-label statistics sit on its rows after the swap)."""
    found: Dict[str, Dict[RunKey, float]] = {}
    for label, by_run in _runs(rows).items():
        for key, points in by_run.items():
            for row in points:
                value = _number(row.get(column))
                if not math.isnan(value):
                    found.setdefault(label, {})[key] = value
                    break
    return found


def distractor_shares(rows: Sequence[Mapping[str, object]]) -> Dict[str, Dict[RunKey, float]]:
    """``{arm label: {run key: share of its kept images that are distractors}}`` of the runs whose rows
    record it (its selection's count, :func:`..detection.selection.distractors_kept`)."""
    return _run_statistic(rows, "distractors_kept")


def _arm_labels(rows: Sequence[Mapping[str, object]]) -> Dict[str, Tuple[str, object]]:
    """``{arm label: (arm, fraction)}`` in the order the labels first appear."""
    return {_label_of(row): (row["arm"], _fraction(row.get("fraction", ""))) for row in rows}


def _reference(arms: Mapping[str, Tuple[str, object]], arm: str, fraction) -> str:
    """The label of ``arm`` that a run at ``fraction`` is compared with: ``arm`` at that fraction,
    else without one, else at its only fraction (a run without one against a study of one
    fraction); ``arm`` itself (no runs: NaN) where none of these ran."""
    ran = [label for label, (name, _) in arms.items() if name == arm]
    for label in (arm_label(arm, fraction), arm):
        if label in ran:
            return label
    return ran[0] if len(ran) == 1 and fraction == "" else arm


def _check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError("metric must be one of %s, not %r" % (", ".join(METRICS), metric))
    return metric


def _paired(final, arm: str, reference: str, keys=None, metric: str = DEFAULT_METRIC) -> np.ndarray:
    """(arm - reference) final ``metric`` over the runs both have (restricted to ``keys`` if given)."""
    shared = [k for k in final.get(arm, {}) if k in final.get(reference, {})]
    if keys is not None:
        shared = [k for k in shared if k in keys]
    return np.array(
        [final[arm][k][metric] - final[reference][k][metric] for k in shared], dtype=np.float64
    )


def _one_sided_paired_t(differences: np.ndarray) -> float:
    """p of "mean difference > 0" (scipy's ttest_rel on the pairs); NaN when it is undefined."""
    from scipy import stats

    if len(differences) < 2 or np.all(differences == differences[0]):
        return float("nan")
    return float(stats.ttest_1samp(differences, 0.0, alternative="greater").pvalue)


def _ci95_half_width(differences: np.ndarray) -> float:
    """Half-width of the 95 % t-interval of the mean of ``differences``; NaN under two of them."""
    from scipy import stats

    n = len(differences)
    if n < 2:
        return float("nan")
    sd = float(np.std(differences, ddof=1))
    return float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n))


def _finite_mean(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def summarize(
    rows: Sequence[Mapping[str, object]],
    control: str = "control",
    oracle: str = "oracle",
    *,
    swap_iter: Optional[int] = None,
    final_evals: int = DEFAULT_FINAL_EVALS,
    metric: str = DEFAULT_METRIC,
) -> List[Dict[str, object]]:
    """Summary rows: one pooled row per arm label (``data_seed`` :data:`POOLED`), in the order the
    labels first appear in ``rows``; then, where ``rows`` hold two or more data seeds, one row per
    data seed and arm label. Every difference, p-value, interval and gap_closed is in ``metric``
    (:data:`METRICS`; the ``metric`` column says which). NaN where undefined (see the module's
    docstring for the columns)."""
    _check_metric(metric)
    final = final_ap50(rows, swap_iter, final_evals)
    noise = neighbour_sd(rows, swap_iter)
    shares = distractor_shares(rows)
    arms = _arm_labels(rows)
    data_seeds = list(dict.fromkeys(run_key(row)[0] for row in rows))
    groups = [(POOLED, None)] + (
        [(data_seed, data_seed) for data_seed in data_seeds] if len(data_seeds) > 1 else []
    )
    summary = []
    for label, data_seed in groups:

        def keys_of(arm):
            return [k for k in final.get(arm, {}) if data_seed is None or k[0] == data_seed]

        def versus(subject, reference, keys):
            """(paired differences, their mean, one-sided p) of ``subject`` against ``reference``."""
            differences = _paired(final, subject, reference, keys, metric)
            delta = float(np.mean(differences)) if len(differences) else float("nan")
            p = float("nan") if subject == reference else _one_sided_paired_t(differences)
            return differences, delta, p

        gaps = _paired(final, oracle, control, set(keys_of(oracle)), metric)
        oracle_gap = float(np.mean(gaps)) if len(gaps) else float("nan")
        for name in final:
            keys = keys_of(name)
            if not keys:
                continue
            arm, fraction = arms[name]
            runs = [final[name][k] for k in keys]
            values = np.array([run["ap50"] for run in runs], dtype=np.float64)
            own_control = _reference(arms, control, fraction)
            differences, delta, p = versus(name, own_control, set(keys))
            _, delta_random, p_random = versus(
                name, _reference(arms, "random", fraction), set(keys)
            )
            _, delta_all, p_all = versus(name, _reference(arms, "all", fraction), set(keys))
            summary.append(
                {
                    "arm": arm,
                    "fraction": fraction,
                    "data_seed": label,
                    "seeds": len(values),
                    "iteration": max(run["iteration"] for run in runs),
                    "ap50_mean": float(np.mean(values)),
                    "ap50_sd": float(np.std(values, ddof=1)) if len(values) > 1 else float("nan"),
                    "ap50_last_mean": float(np.mean([run["ap50_last"] for run in runs])),
                    "ap_mean": float(np.mean([run["ap"] for run in runs])),
                    "ap_sd": float(np.std([run["ap"] for run in runs], ddof=1))
                    if len(runs) > 1
                    else float("nan"),
                    "delta_vs_control": delta,
                    "p_value": p,
                    "ci95_half_width": float("nan")
                    if name == own_control
                    else _ci95_half_width(differences),
                    "delta_vs_random": delta_random,
                    "p_vs_random": p_random,
                    "delta_vs_all": delta_all,
                    "p_vs_all": p_all,
                    "gap_closed": delta / oracle_gap + 0.0  # + 0.0: no "-0" for control
                    if oracle_gap and not math.isnan(oracle_gap)
                    else float("nan"),
                    "neighbour_sd": _finite_mean([noise[(name,) + k] for k in keys]),
                    "distractors_kept": _finite_mean(
                        [shares[name][k] for k in keys if k in shares.get(name, {})]
                    ),
                    "metric": metric,
                }
            )
    return summary


def control_drift(
    rows: Sequence[Mapping[str, object]], swap_iter: int, control: str = "control"
) -> Dict[RunKey, float]:
    """``{(data seed, seed): largest |AP50(i) - AP50(swap)| of control over its evaluations i after the
    swap}``: how far the labelled-only model still moves in the phase where the swapping arms train
    (a plateau keeps it within about 1 point). Runs without a control evaluation at the swap and
    after it are left out."""
    moves = {
        key: _largest_move(points, swap_iter)
        for by_run in _runs([row for row in rows if row["arm"] == control]).values()
        for key, points in by_run.items()
    }
    return {key: move for key, move in moves.items() if not math.isnan(move)}


def per_seed(
    rows: Sequence[Mapping[str, object]],
    control: str = "control",
    *,
    swap_iter: Optional[int] = None,
    final_evals: int = DEFAULT_FINAL_EVALS,
    metric: str = DEFAULT_METRIC,
) -> List[Dict[str, object]]:
    """per_seed.csv's rows: one per run, by arm label in the order of :func:`summarize`, then by run.

    ``ap50`` is the run's final figure (:func:`final_ap50`, as :func:`summarize` takes it, over
    ``evals`` evaluations), ``ap50_last`` its last evaluation's (at ``iteration``), ``ap50_at_swap``
    its evaluation at the swap (the teacher's, which every arm resumes), ``drift_after_swap`` the
    largest |AP50 - AP50 at the swap| after it (on control: how far the labelled-only model still
    moves); ``ap`` its final AP (IoU 0.50:0.95), taken as ``ap50``; ``delta_vs_control`` /
    ``delta_vs_random`` / ``delta_vs_all`` are the per-run paired differences of final ``metric``
    whose means the summary reports (NaN where that arm did not run the pair); images, boxes,
    precision, recall: the run's pseudo labels (NaN for arms without)."""
    _check_metric(metric)
    final = final_ap50(rows, swap_iter, final_evals)
    arms = _arm_labels(rows)
    statistics = {column: _run_statistic(rows, column) for column in _PSEUDO_LABEL_COLUMNS}
    found = []
    for label, by_run in _runs(rows).items():
        arm, fraction = arms[label]
        references = {
            "delta_vs_%s" % column: _reference(arms, name, fraction)
            for column, name in (("control", control), ("random", "random"), ("all", "all"))
        }
        for key, points in by_run.items():
            run = final[label][key]
            row = {
                "arm": arm,
                "fraction": fraction,
                "data_seed": key[0],
                "seed": key[1],
                "iteration": run["iteration"],
                "evals": run["evals"],
                "ap50_at_swap": _at_swap(points, swap_iter),
                "ap50": run["ap50"],
                "ap50_last": run["ap50_last"],
                "ap": run["ap"],
                "drift_after_swap": _largest_move(points, swap_iter),
            }
            for column, reference in references.items():
                other = final.get(reference, {}).get(key)
                row[column] = run[metric] - other[metric] if other else float("nan")
            for column, by_label in statistics.items():
                row[column] = by_label.get(label, {}).get(key, float("nan"))
            found.append(row)
    return found


def write_per_seed(path: str, rows: Sequence[Mapping[str, object]]) -> None:
    """per_seed.csv: :func:`per_seed`'s rows, empty cells where undefined, counts as integers, the
    other figures at full precision (a page renders them at its own)."""

    def cell(column, value):
        if isinstance(value, float) and math.isnan(value):
            return ""
        return int(value) if column in ("images", "boxes") else value

    with atomic_write(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(PER_SEED_COLUMNS)
        writer.writerows([[cell(c, row[c]) for c in PER_SEED_COLUMNS] for row in rows])


def _run_label(key: RunKey) -> str:
    data_seed, seed = key
    return "seed %d" % seed if data_seed == "" else "data seed %s, seed %d" % (data_seed, seed)


def drift_note(drift: Mapping[RunKey, float], swap_iter: int) -> str:
    """One line for summary.md: the control's drift after the swap, per run."""
    if not drift:
        return (
            "Control drift after the swap: no control evaluated at and after iteration %d."
            % swap_iter
        )
    return (
        "Control drift after the swap (largest |AP50 - AP50 at %d| over the later evaluations): %s."
        % (swap_iter, ", ".join("%s: %.2f" % (_run_label(k), v) for k, v in drift.items()))
    )


def noise_note(
    rows: Sequence[Mapping[str, object]],
    swap_iter: Optional[int] = None,
    control: str = "control",
) -> str:
    """One line for summary.md: per data seed, the control's and every arm's mean :func:`neighbour_sd`."""
    noise = neighbour_sd(rows, swap_iter)
    parts = []
    for data_seed in dict.fromkeys(k[1] for k in noise):
        of_seed = {k: v for k, v in noise.items() if k[1] == data_seed}
        ours = [v for k, v in of_seed.items() if k[0] == control]
        part = "%s: control %s, every arm %s" % (
            "data seed %s" % data_seed if data_seed != "" else "all runs",
            _cell(_finite_mean(ours)) or "n/a",
            _cell(_finite_mean(of_seed.values())) or "n/a",
        )
        parts.append(part)
    return (
        "Evaluation noise: sd of AP50 over one run's evaluations after the swap (neighbouring "
        "checkpoints; the control sits at a plateau, so its sd is the evaluation's own noise), mean "
        "over the runs: %s." % "; ".join(parts)
    )


def detectable_note(summary: Sequence[Mapping[str, object]], control: str = "control") -> str:
    """'This study can detect differences of about ±X AP50 ...' (or AP, the summary's metric): X the
    largest pooled 95 % half-width of the arms beside control (the oracle left out where other arms
    ran), per arm label."""
    pooled = [row for row in summary if row["data_seed"] == POOLED]
    widths = {
        arm_label(row["arm"], row.get("fraction", "")): row["ci95_half_width"]
        for row in pooled
        if row["arm"] != control and not math.isnan(row["ci95_half_width"])
    }
    if not widths:
        return "This study has no arm with two or more pairs with control: no interval of the difference."
    headline = [v for arm, v in widths.items() if arm != "oracle"] or list(widths.values())
    pairs = {arm_label(row["arm"], row.get("fraction", "")): row["seeds"] for row in pooled}
    return (
        "This study can detect differences of about ±%.2f %s (the half-width of the 95 %% "
        "t-interval of the mean paired difference from control, pooled over the (data seed, "
        "training seed) pairs; per arm: %s)."
        % (
            max(headline),
            _metric_name(pooled),
            ", ".join("%s ±%.2f over %d" % (arm, v, pairs[arm]) for arm, v in widths.items()),
        )
    )


def _metric_name(summary: Sequence[Mapping[str, object]]) -> str:
    """ "AP50" or "AP": what the summary's differences are in."""
    return METRICS[summary[0].get("metric", DEFAULT_METRIC)].split(" ")[0] if summary else "AP50"


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else "%.4g" % value
    return str(value)


def write_summary(
    summary: Sequence[Mapping[str, object]],
    csv_path: str,
    md_path: str,
    *,
    command: str = "",
    notes: Sequence[str] = (),
    final_evals: int = DEFAULT_FINAL_EVALS,
) -> None:
    """summary.csv (empty cells where undefined) and summary.md (the same table, with how to read it)."""
    with atomic_write(csv_path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(SUMMARY_COLUMNS)
        writer.writerows([[_cell(row[c]) for c in SUMMARY_COLUMNS] for row in summary])
    lines = ["# Semi-supervised detection study", ""]
    if command:
        lines += ["```", command, "```", ""]
    lines += ["| " + " | ".join(SUMMARY_COLUMNS) + " |", "|" + "---|" * len(SUMMARY_COLUMNS)]
    lines += ["| " + " | ".join(_cell(row[c]) for c in SUMMARY_COLUMNS) + " |" for row in summary]
    lines += [
        "",
        "A run's final AP50 and AP (the evaluator is named below), in ap50_mean and ap_mean, are the means of its last "
        "%d evaluation(s) after the swap (fewer where it has fewer); ap50_last_mean is the mean of the runs' last "
        "evaluation alone (iteration). Every difference, p-value, interval and gap_closed is in %s (the metric column)."
        % (final_evals, METRICS[summary[0]["metric"]] if summary else METRICS[DEFAULT_METRIC]),
        "data_seed 'pooled' rows pair every (data seed, training seed) run with control's; the other rows, one data "
        "seed's. fraction is the IMAGESCORE.SELECT_FRACTION of an arm that selects one (empty for the others). "
        "seeds counts the row's runs; sd over them (ddof 1). delta_vs_control is the mean paired difference "
        "from control; p_value is a one-sided paired t-test that the arm beats control (empty when undefined); "
        "ci95_half_width is the half-width of the 95 % t-interval of delta_vs_control; delta_vs_random / p_vs_random "
        "and delta_vs_all / p_vs_all are the same paired difference and test against random at the row's fraction "
        "and against all; gap_closed = delta_vs_control / (oracle - control); neighbour_sd is the mean over the runs "
        "of the sd of AP50 over a run's evaluations after the swap; distractors_kept is the mean over the runs of "
        "the share of the kept images that are distractors (empty where the set has no kinds).",
        *notes,
    ]
    with atomic_write(md_path) as f:
        f.write("\n".join(lines) + "\n")


def plot_curves(
    rows: Sequence[Mapping[str, object]], path: str, *, swap_iter: int = 0, title: str = ""
) -> None:
    """PNG of AP50 against iteration, one line per arm label (mean over its runs at each iteration)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for arm in dict.fromkeys(_label_of(row) for row in rows):
        points: Dict[int, List[float]] = {}
        for row in rows:
            if _label_of(row) == arm:
                points.setdefault(row["iteration"], []).append(row["ap50"])
        iterations = sorted(points)
        axes.plot(
            iterations,
            [np.mean(points[i]) for i in iterations],
            marker="o",
            markersize=3,
            label=arm,
        )
    if swap_iter:
        axes.axvline(swap_iter, color="black", linestyle="--", linewidth=1, label="swap")
    _save_plot(
        figure, axes, path, "iteration", "AP50 (mean over runs)", title or "AP50 against iteration"
    )


def plot_selection_curve(
    summary: Sequence[Mapping[str, object]],
    path: str,
    *,
    flat: Sequence[str] = ("control", "all", "boxfilter"),
    title: str = "",
) -> None:
    """PNG of the pooled final AP50 against the selection fraction: one line per arm run at
    fractions; the arms of ``flat`` that ran without one as horizontal lines (the oracle, far above,
    is left out so that the arms' differences stay visible)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pooled = [row for row in summary if row["data_seed"] == POOLED]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for arm in dict.fromkeys(row["arm"] for row in pooled if row["fraction"] != ""):
        points = sorted(
            (row["fraction"], row["ap50_mean"])
            for row in pooled
            if row["arm"] == arm and row["fraction"] != ""
        )
        axes.plot(*zip(*points), marker="o", label=arm)
    for number, row in enumerate(r for r in pooled if r["fraction"] == "" and r["arm"] in flat):
        axes.axhline(
            row["ap50_mean"],
            color="C%d" % (7 + number % 3),
            linestyle="--",
            linewidth=1,
            label="%s (no fraction)" % row["arm"],
        )
    _save_plot(
        figure,
        axes,
        path,
        "IMAGESCORE.SELECT_FRACTION",
        "final AP50 (mean over runs)",
        title or "Final AP50 against the selection fraction",
    )


def _save_plot(figure, axes, path: str, xlabel: str, ylabel: str, title: str) -> None:
    """Label, lay out and write one study plot as a PNG, atomically."""
    import matplotlib.pyplot as plt

    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    with atomic_write(path, "wb") as f:
        figure.savefig(f, format="png", dpi=100)
    plt.close(figure)


def add_metric_argument(parser) -> None:
    """``--metric`` of every tool that writes study tables: the figure of the paired differences."""
    parser.add_argument(
        "--metric",
        choices=sorted(METRICS),
        default=DEFAULT_METRIC,
        help="the figure the arms are compared by: ap50 (IoU 0.5, the default) or ap (COCO-style "
        "IoU 0.50:0.95, for a set whose AP50 is near its ceiling); summary.csv's metric column says which",
    )


def main(argv=None) -> int:
    """Write per_seed.csv beside each study folder's runs.csv."""
    parser = argparse.ArgumentParser(
        description="per_seed.csv beside each FOLDER/runs.csv (tools/ssod_study.py writes it itself)"
    )
    parser.add_argument("folders", nargs="+", help="study output folders holding a runs.csv")
    parser.add_argument(
        "--swap-iter",
        type=int,
        default=None,
        help="IMAGESCORE.SWAP_ITER of the study (default: each run's first evaluation)",
    )
    parser.add_argument(
        "--final-evals",
        type=int,
        default=DEFAULT_FINAL_EVALS,
        help="evaluations a run's final figure averages, as the folder's summary took it",
    )
    add_metric_argument(parser)
    args = parser.parse_args(argv)
    for folder in args.folders:
        rows = read_runs(os.path.join(folder, "runs.csv"))
        path = os.path.join(folder, "per_seed.csv")
        write_per_seed(
            path,
            per_seed(
                rows, swap_iter=args.swap_iter, final_evals=args.final_evals, metric=args.metric
            ),
        )
        print("wrote %s" % path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
