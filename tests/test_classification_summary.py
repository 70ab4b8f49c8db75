"""The spread over seeds in the classification tables is the sample sd (ddof 1), as in the detection tables."""

import math

import numpy as np
import pytest

from imagescore_det.classification.summary import auroc_summary, seed_table


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
