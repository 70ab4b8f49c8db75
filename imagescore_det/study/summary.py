"""The arithmetic of the side-by-side study (tools/ssod_study.py): runs.csv in, summary and plot out.

runs.csv holds one row per (arm, seed, evaluated iteration): ``arm,seed,iteration,ap50,ap`` and the
arm's pseudo-label statistics. The summary compares each arm's final AP50 (at its last evaluated
iteration) with the ``control`` arm's on the same seeds:

- ``delta_vs_control``: the mean over seeds of (arm - control), a paired difference;
- ``p_value``: one-sided paired t-test of "the arm beats control" (``scipy.stats.ttest_1samp`` of
  the per-seed differences against 0, ``alternative="greater"``: the same as ``ttest_rel``); it needs two or more paired seeds and differences that are not all
  equal, else it is empty. With three seeds a sign or permutation test can never go below 0.125,
  which is why the t-test is used; it assumes roughly normal per-seed differences;
- ``gap_closed``: ``delta_vs_control / (oracle - control)``, the oracle's own paired delta, where an
  ``oracle`` arm ran; empty otherwise.

No Detectron2 here: the tool writes runs.csv, this module reads it (and so does its test).
"""

import csv
import math
from typing import Dict, List, Mapping, Sequence

import numpy as np

from ..utils.io import atomic_write

__all__ = [
    "RUN_COLUMNS",
    "SUMMARY_COLUMNS",
    "read_runs",
    "write_runs",
    "final_ap50",
    "summarize",
    "control_drift",
    "drift_note",
    "write_summary",
    "plot_curves",
]

RUN_COLUMNS = [
    "arm",
    "seed",
    "iteration",
    "ap50",
    "ap",
    "ap50_coco",
    "images",
    "boxes",
    "precision",
    "recall",
]
SUMMARY_COLUMNS = [
    "arm",
    "seeds",
    "iteration",
    "ap50_mean",
    "ap50_sd",
    "ap_mean",
    "delta_vs_control",
    "p_value",
    "gap_closed",
]


def read_runs(path: str) -> List[Dict[str, object]]:
    """runs.csv as dicts: seed and iteration as int, AP values as float; refuses missing columns."""
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
                        seed=int(row["seed"]),
                        iteration=int(row["iteration"]),
                        ap50=float(row["ap50"]),
                        ap=float(row["ap"]),
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


def final_ap50(rows: Sequence[Mapping[str, object]]) -> Dict[str, Dict[int, Mapping[str, object]]]:
    """``{arm: {seed: the row of its last evaluated iteration}}``."""
    final: Dict[str, Dict[int, Mapping[str, object]]] = {}
    for row in rows:
        best = final.setdefault(row["arm"], {}).get(row["seed"])
        if best is None or row["iteration"] > best["iteration"]:
            final[row["arm"]][row["seed"]] = row
    return final


def _paired(final, arm: str, reference: str):
    seeds = sorted(set(final.get(arm, {})) & set(final.get(reference, {})))
    return np.array(
        [final[arm][s]["ap50"] - final[reference][s]["ap50"] for s in seeds], dtype=np.float64
    )


def _one_sided_paired_t(differences: np.ndarray) -> float:
    """p of "mean difference > 0" (scipy's ttest_rel on the pairs); NaN when it is undefined."""
    from scipy import stats

    if len(differences) < 2 or np.all(differences == differences[0]):
        return float("nan")
    return float(stats.ttest_1samp(differences, 0.0, alternative="greater").pvalue)


def summarize(
    rows: Sequence[Mapping[str, object]], control: str = "control", oracle: str = "oracle"
) -> List[Dict[str, object]]:
    """One summary row per arm, in the order the arms first appear in ``rows``; NaN where undefined."""
    final = final_ap50(rows)
    oracle_gap = (
        float(np.mean(_paired(final, oracle, control)))
        if oracle in final and control in final
        else float("nan")
    )
    summary = []
    for arm, by_seed in final.items():
        values = np.array([by_seed[s]["ap50"] for s in sorted(by_seed)], dtype=np.float64)
        differences = _paired(final, arm, control) if control in final else np.array([])
        delta = float(np.mean(differences)) if len(differences) else float("nan")
        summary.append(
            {
                "arm": arm,
                "seeds": len(values),
                "iteration": max(row["iteration"] for row in by_seed.values()),
                "ap50_mean": float(np.mean(values)),
                "ap50_sd": float(np.std(values, ddof=1)) if len(values) > 1 else float("nan"),
                "ap_mean": float(np.mean([row["ap"] for row in by_seed.values()])),
                "delta_vs_control": delta,
                "p_value": float("nan") if arm == control else _one_sided_paired_t(differences),
                "gap_closed": delta / oracle_gap
                if oracle_gap and not math.isnan(oracle_gap)
                else float("nan"),
            }
        )
    return summary


def control_drift(
    rows: Sequence[Mapping[str, object]], swap_iter: int, control: str = "control"
) -> Dict[int, float]:
    """``{seed: largest |AP50(i) - AP50(swap)| of control over its evaluations i after the swap}``: how far
    the labelled-only model still moves in the phase where the swapping arms train (a plateau keeps it
    within about 1 point). Seeds without a control evaluation at the swap and after it are left out."""
    by_seed: Dict[int, Dict[int, float]] = {}
    for row in rows:
        if row["arm"] == control:
            by_seed.setdefault(row["seed"], {})[row["iteration"]] = row["ap50"]
    drift = {}
    for seed, points in sorted(by_seed.items()):
        after = [value for iteration, value in points.items() if iteration > swap_iter]
        if swap_iter in points and after:
            drift[seed] = max(abs(value - points[swap_iter]) for value in after)
    return drift


def drift_note(drift: Mapping[int, float], swap_iter: int) -> str:
    """One line for summary.md: the control's drift after the swap, per seed."""
    if not drift:
        return (
            "Control drift after the swap: no control evaluated at and after iteration %d."
            % swap_iter
        )
    return (
        "Control drift after the swap (largest |AP50 - AP50 at %d| over the later evaluations): %s."
        % (
            swap_iter,
            ", ".join("seed %d: %.2f" % (seed, value) for seed, value in sorted(drift.items())),
        )
    )


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
        "Final AP50 (VOC, IoU 0.5) at each arm's last evaluation; sd over seeds (ddof 1). delta_vs_control is the",
        "mean per-seed difference from control; p_value is a one-sided paired t-test over seeds that the arm beats",
        "control (empty when undefined); gap_closed = delta_vs_control / (oracle - control).",
        *notes,
    ]
    with atomic_write(md_path) as f:
        f.write("\n".join(lines) + "\n")


def plot_curves(
    rows: Sequence[Mapping[str, object]], path: str, *, swap_iter: int = 0, title: str = ""
) -> None:
    """PNG of AP50 against iteration, one line per arm (mean over its seeds at each iteration)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for arm in dict.fromkeys(row["arm"] for row in rows):
        points: Dict[int, List[float]] = {}
        for row in rows:
            if row["arm"] == arm:
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
    axes.set_xlabel("iteration")
    axes.set_ylabel("AP50 (mean over seeds)")
    axes.set_title(title or "AP50 against iteration")
    axes.legend()
    figure.tight_layout()
    with atomic_write(path, "wb") as f:
        figure.savefig(f, format="png", dpi=100)
    plt.close(figure)
