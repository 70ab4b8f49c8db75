"""The spread over seeds in the classification tables is the sample sd (ddof 1), as in the detection tables,
and committed reports are summarised again from their per-seed CSVs alone."""

import csv
import math
import os

import numpy as np
import pytest

from imagescore_det.classification.summary import auroc_summary, seed_table
from imagescore_det.reports.classification import main, resummarize


def runs_with_accuracies(accuracies):
    """One variant, one seed per accuracy: 20 test images, the first ``20 × accuracy`` predicted right."""
    labels = np.zeros(20, dtype=np.int64)
    runs = {}
    for seed, accuracy in enumerate(accuracies):
        predictions = np.where(np.arange(20) < round(20 * accuracy), 0, 1)
        runs[seed] = {"test_pred": predictions, "test_labels": labels}
    return {"baseline": runs}


def test_seed_table_gives_mean_and_sample_sd_over_seeds():
    rows = seed_table(runs_with_accuracies([0.6, 0.8, 0.9]), ["baseline"])
    assert [row["seed"] for row in rows] == ["0", "1", "2", "mean", "sd"]
    assert [row["baseline"] for row in rows[:3]] == [0.6, 0.8, 0.9]
    assert rows[3]["baseline"] == pytest.approx(2.3 / 3)
    # sum of squared deviations 0.14 / 3 over n - 1 = 2 (the population sd would divide by 3)
    assert rows[4]["baseline"] == pytest.approx(math.sqrt(0.14 / 3 / 2), rel=1e-12)
    one_seed = seed_table(runs_with_accuracies([0.75]), ["baseline"])
    assert one_seed[1]["baseline"] == 0.75 and math.isnan(one_seed[2]["baseline"])


def test_auroc_summary_gives_sample_sd_over_the_seeds_where_it_is_defined():
    rows = [
        {"mode": "softmax", "auroc image score": a, "auroc max softmax": b}
        for a, b in ((0.7, 0.9), (0.8, 0.95), (0.9, float("nan")))
    ]
    (summary,) = auroc_summary(rows)
    assert summary["seeds"] == 3 and summary["image score (mean)"] == pytest.approx(0.8)
    assert summary["image score (sd)"] == pytest.approx(0.1, rel=1e-12)
    # one seed's softmax AUROC is undefined: mean and sd over the other two
    assert summary["max softmax (mean)"] == pytest.approx(0.925)
    assert summary["max softmax (sd)"] == pytest.approx(0.05 / math.sqrt(2), rel=1e-12)
    assert summary["seeds where image score > softmax"] == 0


def test_resummarize_rewrites_the_summaries_and_report_tables_from_the_per_seed_csvs(tmp_path):
    # the mean/sd rows are stale (population sd, ddof 0): only the seed rows are read
    (tmp_path / "seeds.csv").write_text(
        "seed,baseline,softmax\n0,0.6,0.5\n1,0.8,0.5\n2,0.9,0.8\nmean,0.7667,0.6\nsd,0.1247,0.1414\n"
    )
    (tmp_path / "auroc_per_seed.csv").write_text(
        "mode,seed,errors,auroc image score,auroc max softmax\n"
        "softmax,0,3,0.7,0.9\nsoftmax,1,2,0.8,0.95\nsoftmax,2,4,0.9,nan\n"
    )
    (tmp_path / "report.md").write_text(
        "# r\n\n<!-- table: file=seeds.csv; format=.4f -->\nstale\n<!-- end table -->\n"
    )
    written = resummarize(str(tmp_path))
    assert [os.path.basename(p) for p in written] == ["seeds.csv", "auroc.csv", "report.md"]
    with open(tmp_path / "seeds.csv") as f:
        seeds = list(csv.DictReader(f))
    assert [r["seed"] for r in seeds] == ["0", "1", "2", "mean", "sd"]
    assert float(seeds[3]["baseline"]) == pytest.approx(2.3 / 3, rel=1e-12)
    assert float(seeds[4]["baseline"]) == pytest.approx(math.sqrt(0.14 / 3 / 2), rel=1e-12)
    assert float(seeds[4]["softmax"]) == pytest.approx(math.sqrt(0.06 / 2), rel=1e-12)
    with open(tmp_path / "auroc.csv") as f:
        (auroc,) = list(csv.DictReader(f))
    assert auroc["mode"] == "softmax" and auroc["seeds"] == "3"
    assert float(auroc["image score (sd)"]) == pytest.approx(0.1, rel=1e-12)
    assert float(auroc["max softmax (sd)"]) == pytest.approx(0.05 / math.sqrt(2), rel=1e-12)
    report = (tmp_path / "report.md").read_text()
    assert "| mean | 0.7667 | 0.6000 |\n| sd | 0.1528 | 0.1732 |\n<!-- end table -->" in report
    before = {p: open(p).read() for p in written}
    assert main(["--resummarize", str(tmp_path)]) == 0  # a second pass changes nothing
    assert {p: open(p).read() for p in written} == before


def test_resummarize_names_the_missing_per_seed_file(tmp_path, capsys):
    (tmp_path / "seeds.csv").write_text("seed,baseline\n0,0.6\n1,0.8\n")
    assert main(["--resummarize", str(tmp_path)]) == 2
    assert "no auroc_per_seed.csv in %s" % tmp_path in capsys.readouterr().err
