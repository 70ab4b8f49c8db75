"""Summaries of a classification experiment's runs: the numbers behind every report table.

Reads the run files written by :mod:`.experiment` (``<output>/runs/seed<s>/<variant>.npz``).
Tables are lists of flat dicts (one per row), ready for CSV or Markdown. Tables that compare
variants use only the seeds present for all of them, so comparisons stay paired.
"""

import glob
import os
import zipfile
from typing import Dict, List, Sequence

import numpy as np

from .metrics import accuracy_by_interval, failure_auroc, score_interval_edges
from .significance import bootstrap_p_value

__all__ = [
    "SELECTION_VARIANTS",
    "load_runs",
    "comparison_table",
    "seed_table",
    "seed_summary",
    "auroc_table",
    "auroc_summary",
    "selection_table",
    "interval_table",
]

Runs = Dict[str, Dict[int, Dict[str, np.ndarray]]]
SELECTION_VARIANTS = ("baseline", "softmax", "imagescore")


def load_runs(output_dir: str) -> Runs:
    """``{variant: {seed: arrays}}`` from every run file under ``output_dir/runs``."""
    runs: Runs = {}
    for path in sorted(glob.glob(os.path.join(output_dir, "runs", "seed*", "*.npz"))):
        seed = int(os.path.basename(os.path.dirname(path))[len("seed") :])
        try:
            with np.load(path) as archive:
                record = dict(archive)
        except (
            zipfile.BadZipFile,
            EOFError,
            OSError,
            ValueError,
        ) as error:  # truncated or overwritten
            raise ValueError(
                "run file %s is damaged (%s): delete it and run seed %d again" % (path, error, seed)
            ) from error
        runs.setdefault(os.path.splitext(os.path.basename(path))[0], {})[seed] = record
    if not runs:
        raise ValueError("no run files under %s" % os.path.join(output_dir, "runs"))
    return runs


def _common_seeds(runs: Runs, variants: Sequence[str]) -> List[int]:
    missing = [v for v in variants if v not in runs]
    if missing:
        raise ValueError("no runs of %r in the output folder" % missing[0])
    return sorted(set.intersection(*(set(runs[v]) for v in variants)))


def _correct(runs: Runs, variant: str, seeds: Sequence[int]) -> np.ndarray:
    return np.stack(
        [runs[variant][s]["test_pred"] == runs[variant][s]["test_labels"] for s in seeds]
    ).astype(float)


def _mean_per_group(correct: np.ndarray, groups: np.ndarray) -> float:
    """Mean over groups of each group's accuracy (mean over seeds and its images)."""
    return float(np.mean([correct[:, groups == g].mean() for g in np.unique(groups)]))


def comparison_table(
    runs: Runs,
    baseline: str,
    treatments: Sequence[str],
    class_names: Sequence[str],
    *,
    resamples: int,
    seed: int,
) -> List[dict]:
    """Per class, then for the mean per-class accuracy: accuracies (mean over seeds), differences, p-values.

    For each treatment: its accuracy, its difference to ``baseline`` and the bootstrap p-value of
    "treatment beats baseline"; with two treatments, the first minus the second as well.
    """
    seeds = _common_seeds(runs, [baseline, *treatments])
    labels = runs[baseline][seeds[0]]["test_labels"]
    correct = {v: _correct(runs, v, seeds) for v in [baseline, *treatments]}
    parts = [(name, labels == c) for c, name in enumerate(class_names) if (labels == c).any()]
    parts.append(("mean", np.ones(len(labels), bool)))
    rows = []
    for name, columns in parts:
        groups = labels[columns]
        row = {"class": name, baseline: _mean_per_group(correct[baseline][:, columns], groups)}
        for variant in treatments:
            row[variant] = _mean_per_group(correct[variant][:, columns], groups)
            row[variant + " - " + baseline] = row[variant] - row[baseline]
            row["p(" + variant + ")"] = bootstrap_p_value(
                correct[baseline][:, columns],
                correct[variant][:, columns],
                groups=groups,
                resamples=resamples,
                seed=seed,
            )
        if len(treatments) == 2:
            row[" - ".join(treatments)] = row[treatments[0]] - row[treatments[1]]
        rows.append(row)
    return rows


def _sample_sd(values: np.ndarray) -> float:
    """Sample standard deviation (ddof 1) of the defined values, as the detection tables give it;
    NaN with fewer than two."""
    values = values[~np.isnan(values)]
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


_SUMMARY_ROWS = ("mean", "sd")


def seed_summary(rows: List[dict]) -> List[dict]:
    """The per-seed ``rows`` (``seed`` and one value per variant), then their mean and sample
    standard deviation (ddof 1) over seeds; earlier ``mean``/``sd`` rows are dropped, so a table
    read back from its CSV is summarised again from its seeds alone."""
    rows = [r for r in rows if str(r["seed"]) not in _SUMMARY_ROWS]
    values = {v: np.array([r[v] for r in rows], dtype=float) for v in rows[0] if v != "seed"}
    return (
        rows
        + [dict({"seed": "mean"}, **{v: x.mean() for v, x in values.items()})]
        + [dict({"seed": "sd"}, **{v: _sample_sd(x) for v, x in values.items()})]
    )


def seed_table(runs: Runs, variants: Sequence[str]) -> List[dict]:
    """Test accuracy of each variant per seed, then mean and sample standard deviation (ddof 1) over seeds."""
    seeds = _common_seeds(runs, variants)
    accuracy = {v: _correct(runs, v, seeds).mean(axis=1) for v in variants}
    return seed_summary(
        [
            dict({"seed": str(s)}, **{v: accuracy[v][i] for v in variants})
            for i, s in enumerate(seeds)
        ]
    )


def auroc_table(runs: Runs, variants: Sequence[str]) -> List[dict]:
    """Per variant and seed: AUROC of image score and of max softmax at separating right from wrong test predictions."""
    rows = []
    for variant in variants:
        for seed, record in sorted(runs[variant].items()):
            correct = record["test_pred"] == record["test_labels"]
            rows.append(
                {
                    "mode": variant,
                    "seed": seed,
                    "errors": int((~correct).sum()),
                    "auroc image score": failure_auroc(correct, record["test_score"]),
                    "auroc max softmax": failure_auroc(correct, record["test_confidence"]),
                }
            )
    return rows


def _share(part: int, whole: int) -> float:
    return part / whole if whole else float("nan")


def selection_table(runs: Runs, variants: Sequence[str]) -> List[dict]:
    """Per variant: additional images added per epoch and the share whose predicted label is right."""
    rows = []
    for variant in variants:
        records = [r for r in runs[variant].values() if len(r["selected_count"])]
        counts = np.concatenate([r["selected_count"] for r in records])
        right = np.concatenate([r["selected_correct"] for r in records])
        last_counts = sum(int(r["selected_count"][-1]) for r in records)
        last_right = sum(int(r["selected_correct"][-1]) for r in records)
        rows.append(
            {
                "mode": variant,
                "added per epoch": counts.mean(),
                "label accuracy of added": _share(int(right.sum()), int(counts.sum())),
                "label accuracy, last epoch": _share(last_right, last_counts),
            }
        )
    return rows


def _pooled(records, part: str):
    """(scores, correct) of one part ("labelled" or "test") pooled over seeds."""
    scores = np.concatenate([r[part + "_score"] for r in records])
    correct = np.concatenate([r[part + "_pred"] == r[part + "_labels"] for r in records])
    return scores, correct


def interval_table(runs: Runs, variants: Sequence[str], bins: int) -> List[dict]:
    """Per variant, part (training = labelled, test) and equal-width score interval: image count and accuracy.

    Pooled over seeds; one set of intervals per variant, spanning its training and test scores.
    """
    rows = []
    for variant in variants:
        parts = {
            "training": _pooled(runs[variant].values(), "labelled"),
            "test": _pooled(runs[variant].values(), "test"),
        }
        edges = score_interval_edges(np.concatenate([scores for scores, _ in parts.values()]), bins)
        for part, (scores, correct) in parts.items():
            accuracy, counts = accuracy_by_interval(scores, correct, edges)
            for i in range(bins):
                rows.append(
                    {
                        "mode": variant,
                        "part": part,
                        "low": edges[i],
                        "high": edges[i + 1],
                        "images": int(counts[i]),
                        "accuracy": accuracy[i],
                    }
                )
    return rows


def auroc_summary(rows: List[dict]) -> List[dict]:
    """Mean and sample standard deviation (ddof 1) over seeds of :func:`auroc_table`, per mode."""
    summary = []
    for mode in dict.fromkeys(r["mode"] for r in rows):
        mine = [r for r in rows if r["mode"] == mode]
        score = np.array([r["auroc image score"] for r in mine])
        softmax = np.array([r["auroc max softmax"] for r in mine])
        summary.append(
            {
                "mode": mode,
                "seeds": len(mine),
                "image score (mean)": np.nanmean(score),
                "image score (sd)": _sample_sd(score),
                "max softmax (mean)": np.nanmean(softmax),
                "max softmax (sd)": _sample_sd(softmax),
                "seeds where image score > softmax": int((score > softmax).sum()),
            }
        )
    return summary
