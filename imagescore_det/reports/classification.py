"""Reports of a classification experiment: the paper's table, the accuracy-by-score figure, AUROC.

Presentation only: the numbers come from :mod:`imagescore_det.classification.summary`; this module
writes them as Markdown, CSV and PNG (matplotlib's Agg canvas), every file atomically.
"""

import csv
import os
from typing import List, Sequence

import numpy as np
from matplotlib.figure import (
    Figure,  # drawn with the Agg canvas; pyplot's global state is never touched
)

from ..classification.summary import (
    SELECTION_VARIANTS,
    auroc_summary,
    auroc_table,
    comparison_table,
    interval_table,
    load_runs,
    seed_table,
    selection_table,
)
from ..utils.io import atomic_write

__all__ = ["plot_score_intervals", "write_classification_report"]


def plot_score_intervals(rows: List[dict], path: str) -> None:
    """Accuracy per image-score interval (training vs test) above the image counts, one column per mode."""
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    figure = Figure(figsize=(4.2 * len(modes), 6.5))
    axes = figure.subplots(2, len(modes), squeeze=False, sharex="col")
    for column, mode in enumerate(modes):
        for offset, part in ((-0.2, "training"), (0.2, "test")):
            mine = [r for r in rows if r["mode"] == mode and r["part"] == part]
            centres = np.array([(r["low"] + r["high"]) / 2 for r in mine])
            width = mine[0]["high"] - mine[0]["low"]
            axes[0, column].plot(centres, [r["accuracy"] for r in mine], marker="o", label=part)
            axes[1, column].bar(
                centres + offset * width, [r["images"] for r in mine], width=0.4 * width, label=part
            )
        axes[0, column].set(title=mode, ylabel="accuracy", ylim=(0, 1.02))
        axes[1, column].set(xlabel="image score (interval centre)", ylabel="images", yscale="log")
        axes[0, column].legend(loc="lower right")
    figure.tight_layout()
    with atomic_write(path, "wb") as f:
        figure.savefig(f, format="png", dpi=110)


def _format(value) -> str:
    if isinstance(value, (float, np.floating)):
        return (
            "n/a" if np.isnan(value) else ("%.1f" % value if abs(value) >= 10 else "%.4f" % value)
        )
    return str(value)


def _write_csv(rows: List[dict], path: str) -> None:
    with atomic_write(path, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    k: repr(float(v)) if isinstance(v, (float, np.floating)) else v
                    for k, v in row.items()
                }
            )


def _markdown(rows: List[dict]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(
        lines + ["| " + " | ".join(_format(row[k]) for k in header) + " |" for row in rows]
    )


NOTES = {
    "per_class": 'Test accuracy, mean over seeds; `p(x)` = one-sided bootstrap p-value of "x beats baseline" '
    "(%d resamples of seeds and test images, crossed); the `mean` row is the mean per-class accuracy.",
    "vs_softmax": "Image-score selection against softmax selection directly: `p(imagescore)` = one-sided bootstrap "
    'p-value of "image score beats softmax" (same resampling as above).',
    "assembly": "Model k is boosted for class k (image-score selection for class k only); an image claimed by several "
    "models takes the label of the highest image score, an unclaimed one the baseline model's label.",
    "seeds": "Share of all test images classified correctly; sd = sample standard deviation over seeds (ddof 1).",
    "auroc": "How well each ranking separates the test images a model classifies correctly from those it gets wrong "
    "(0.5 = chance, 1 = perfect), mean and sample standard deviation (ddof 1) over seeds; image score against the reference of the "
    "predicted class. Per seed: `auroc_per_seed.csv`.",
    "selection": "Additional images added per epoch (mean over epochs and seeds) and the share whose predicted label, "
    "the one they are trained with, is right.",
}
FIGURE = (
    "## Accuracy by image-score interval\n\nPooled over seeds; training = the labelled images; every image scored "
    "against the reference of its predicted class; equal-width intervals; counts on a log scale. Numbers: `score_intervals.csv`.\n\n"
    "![accuracy by score interval](score_intervals.png)"
)


def write_classification_report(
    output_dir: str, report_dir: str, class_names: Sequence[str], cfg
) -> List[str]:
    """Write every table (Markdown + CSV) and figure the runs allow into ``report_dir``; returns the paths."""
    runs = load_runs(output_dir)
    options = dict(resamples=cfg.SIGNIFICANCE.RESAMPLES, seed=cfg.SIGNIFICANCE.SEED)
    present = [v for v in SELECTION_VARIANTS if v in runs]
    treatments = [v for v in ("imagescore", "softmax") if v in runs]
    tables = {}
    if "baseline" in runs and treatments:
        tables["per_class"] = (
            "Per-class test accuracy",
            comparison_table(runs, "baseline", treatments, class_names, **options),
        )
    if len(treatments) == 2:
        tables["vs_softmax"] = (
            "Image score vs softmax",
            comparison_table(runs, "softmax", ["imagescore"], class_names, **options),
        )
    if present:
        tables["seeds"] = (
            "Test accuracy per seed",
            seed_table(runs, present + (["assemble"] if "assemble" in runs else [])),
        )
    if "assemble" in runs:
        tables["assembly"] = (
            "Model assembly",
            comparison_table(runs, "baseline", ["assemble"], class_names, **options),
        )
    if present:
        tables["auroc"] = (
            "AUROC: right vs wrong test predictions",
            auroc_summary(auroc_table(runs, present)),
        )
    if [v for v in present if v != "baseline"]:
        tables["selection"] = (
            "Additional images",
            selection_table(runs, [v for v in present if v != "baseline"]),
        )
    seeds = sorted(set().union(*(set(r) for r in runs.values())))
    sections = [
        "# %s, %s: classification report\n\nSeeds %s; formula %r; alphas %s."
        % (
            cfg.DATA.NAME,
            cfg.MODEL.NAME,
            seeds,
            cfg.IMAGESCORE.FORMULA,
            list(cfg.IMAGESCORE.ALPHAS),
        )
    ]
    notes = dict(NOTES, per_class=NOTES["per_class"] % options["resamples"])
    if "assemble" in runs:
        claims = np.concatenate([r["claims"] for r in runs["assemble"].values()])
        shares = tuple(100 * np.mean(m) for m in (claims == 0, claims == 1, claims > 1))
        notes["assembly"] += (
            " Test images claimed by no model: %.1f%%, by one: %.1f%%, by several: %.1f%%." % shares
        )
    written = []
    for name, (title, rows) in tables.items():
        sections.append(
            "## %s\n\n%s\n\n%s\n\nCSV: `%s.csv`" % (title, notes[name], _markdown(rows), name)
        )
        written.append(os.path.join(report_dir, name + ".csv"))
        _write_csv(rows, written[-1])
    if present:
        written.append(os.path.join(report_dir, "auroc_per_seed.csv"))
        _write_csv(auroc_table(runs, present), written[-1])
        intervals = interval_table(runs, present, cfg.REPORT.SCORE_BINS)
        written.append(os.path.join(report_dir, "score_intervals.csv"))
        _write_csv(intervals, written[-1])
        written.append(os.path.join(report_dir, "score_intervals.png"))
        plot_score_intervals(intervals, written[-1])
        sections.append(FIGURE)
    written.append(os.path.join(report_dir, "report.md"))
    with atomic_write(written[-1]) as f:
        f.write("\n\n".join(sections) + "\n")
    return written
