"""Reports of a classification experiment: the paper's table, the accuracy-by-score figure, AUROC.

Presentation only: the numbers come from :mod:`imagescore_det.classification.summary`; this module
writes them as CSV and PNG (matplotlib's Agg canvas), and report.md's tables as render markers that
:mod:`.render` fills from those CSVs, every file atomically. ``python -m
imagescore_det.reports.classification --resummarize DIR`` summarises a committed report's per-seed
CSVs again (no run files needed) and renders its report.md.
"""

import argparse
import csv
import os
import sys
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
    seed_summary,
    seed_table,
    selection_table,
)
from ..utils.io import atomic_write
from .render import render_file, render_page

__all__ = ["plot_score_intervals", "write_classification_report", "resummarize", "main"]


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


def _read_csv(path: str) -> List[dict]:
    """Rows of a report CSV, every column but the text ones (mode, seed) as floats."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    try:
        return [
            {k: v if k in ("mode", "seed") else float(v) for k, v in row.items()} for row in rows
        ]
    except ValueError as error:
        raise ValueError("%s holds a value that is not a number: %s" % (path, error)) from None


FORMATS = {"selection": "added per epoch:.1f"}  # per table, columns not at 4 decimals


def _table_marker(name: str) -> str:
    """The renderer's marker of one report table: ``reports.render`` writes it from ``<name>.csv``."""
    return "<!-- table: file=%s.csv; format=.4f%s -->\n<!-- end table -->" % (
        name,
        "; formats=" + FORMATS[name] if name in FORMATS else "",
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
            "## %s\n\n%s\n\n%s\n\nCSV: `%s.csv`" % (title, notes[name], _table_marker(name), name)
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
        f.write(render_page("\n\n".join(sections) + "\n", report_dir, written[-1]))
    return written


# Each summary CSV and the per-seed CSV it summarises; both are committed with a study.
SUMMARIES = {
    "seeds.csv": ("seeds.csv", seed_summary),
    "auroc.csv": ("auroc_per_seed.csv", auroc_summary),
}


def resummarize(report_dir: str) -> List[str]:
    """Write a report's summaries over seeds again from its per-seed CSVs, then its report.md tables.

    No run files needed: the same functions as :func:`write_classification_report` (``seed_summary``,
    ``auroc_summary``) read the committed per-seed numbers, so a change of convention (such as the
    sample sd) reaches committed studies without training again. Returns the paths written.
    """
    written = []
    for target, (source, summarize) in SUMMARIES.items():
        path = os.path.join(report_dir, source)
        if not os.path.isfile(path):
            raise ValueError(
                "no %s in %s: not a classification report folder" % (source, report_dir)
            )
        try:
            rows = summarize(_read_csv(path))
        except (KeyError, IndexError) as error:
            raise ValueError("%s lacks what the summary needs (%r)" % (path, error)) from None
        written.append(os.path.join(report_dir, target))
        _write_csv(rows, written[-1])
    report = os.path.join(report_dir, "report.md")
    if os.path.isfile(report):
        render_file(report)
        written.append(report)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=resummarize.__doc__.split("\n\n")[0])
    parser.add_argument(
        "--resummarize",
        nargs="+",
        required=True,
        metavar="REPORT_DIR",
        help="report folders (as written by tools/train_classifier.py), e.g. docs/digits_study",
    )
    try:
        for folder in parser.parse_args(argv).resummarize:
            for path in resummarize(folder):
                print("wrote", path)
    except ValueError as error:
        print("error: %s" % error, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
