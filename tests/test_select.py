"""Selection: exact counts, repeatable tie-breaking, per-class fractions."""

import numpy as np
import pytest

from imagescore_det.scoring import (
    count_to_keep,
    rank_by_score,
    select_per_class,
    select_top_fraction,
)


@pytest.mark.parametrize(
    "fraction, total, kept",
    [(0.3, 10, 3), (0.3, 11, 4), (0.3, 1, 1), (0.0, 50, 0), (1.0, 7, 7), (0.7, 10, 7)],
)
def test_count_is_ceil_of_the_decimal_product(fraction, total, kept):
    assert count_to_keep(fraction, total) == kept


def test_fraction_outside_unit_interval_is_refused():
    with pytest.raises(ValueError, match="fraction"):
        count_to_keep(1.2, 10)


def test_ties_are_broken_by_ascending_image_id():
    scores = [-1.0, -0.5, -0.5, -2.0, -0.5]
    ids = [10, 42, 7, 3, 8]
    assert rank_by_score(scores, ids).tolist() == [2, 4, 1, 0, 3]
    assert select_top_fraction(scores, ids, 0.4).tolist() == [2, 4]


def test_selection_is_independent_of_input_order():
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=200), 1)  # many ties
    ids = np.arange(200) * 3
    chosen = set(ids[select_top_fraction(scores, ids, 0.3)])
    permutation = rng.permutation(200)
    assert (
        set(ids[permutation][select_top_fraction(scores[permutation], ids[permutation], 0.3)])
        == chosen
    )
    assert len(chosen) == 60


def test_bad_scores_or_ids_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        rank_by_score([0.0, float("nan")], ["a", "b"])
    with pytest.raises(ValueError, match="unique"):
        rank_by_score([0.0, 1.0], ["a", "a"])
    with pytest.raises(ValueError, match="one length"):
        rank_by_score([0.0, 1.0], ["a"])


def test_per_class_counts_follow_alpha_of_each_predicted_class():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, size=100)
    scores = rng.normal(size=100)
    alphas = [0.5, 0.3, 0.0]
    selected = select_per_class(scores, labels, alphas, image_ids=np.arange(100))
    for cls, indices in selected.items():
        candidates = np.flatnonzero(labels == cls)
        assert len(indices) == count_to_keep(alphas[cls], len(candidates))
        assert (labels[indices] == cls).all()
        worst_kept = scores[indices].min() if len(indices) else np.inf
        rest = np.setdiff1d(candidates, indices)
        assert (scores[rest] <= worst_kept).all()


def test_per_class_needs_an_alpha_for_every_predicted_class():
    with pytest.raises(ValueError, match="no alpha given for predicted class 2"):
        select_per_class([0.0, 1.0], [0, 2], {0: 0.5, 1: 0.5}, image_ids=[0, 1])
