"""The bootstrap test against cases with a known answer."""

import numpy as np
import pytest

from imagescore_det.classification import bootstrap_p_value, paired_difference


def correctness(rng, accuracy, shape):
    return (rng.random(shape) < accuracy).astype(float)


def test_identical_samples_give_one_half():
    rng = np.random.default_rng(1)
    sample = correctness(rng, 0.8, (5, 200))
    assert bootstrap_p_value(sample, sample.copy()) == pytest.approx(0.5)
    assert bootstrap_p_value(sample, sample.copy(), groups=np.arange(200) % 10) == pytest.approx(
        0.5
    )


def test_large_shift_is_significant_and_its_reverse_is_not():
    rng = np.random.default_rng(2)
    baseline = correctness(rng, 0.6, (5, 300))
    better = np.maximum(baseline, correctness(rng, 0.5, (5, 300)))  # fixes about half the errors
    assert bootstrap_p_value(baseline, better) < 0.01
    assert bootstrap_p_value(better, baseline) > 0.99


def test_small_noisy_difference_is_not_significant():
    rng = np.random.default_rng(3)
    baseline = correctness(rng, 0.9, (5, 100))
    treatment = baseline.copy()
    treatment[0, :2] = 1 - treatment[0, :2]  # two flips in one seed: no real effect
    assert 0.05 < bootstrap_p_value(baseline, treatment) < 0.95


def test_seed_variation_counts():
    """Every seed improves on pooled images, but one seed carries the whole gain: less certain than a steady gain."""
    rng = np.random.default_rng(4)
    baseline = correctness(rng, 0.7, (5, 200))
    steady, lucky = baseline.copy(), baseline.copy()
    wrong = [np.flatnonzero(row == 0) for row in baseline]
    for s in range(5):
        steady[s, wrong[s][:4]] = 1
    lucky[0, wrong[0][:20]] = 1
    assert bootstrap_p_value(baseline, steady) < bootstrap_p_value(baseline, lucky)


def test_fixed_seed_repeats_and_groups_weight_classes_equally():
    rng = np.random.default_rng(5)
    baseline = correctness(rng, 0.7, (5, 120))
    treatment = correctness(rng, 0.75, (5, 120))
    assert bootstrap_p_value(baseline, treatment, seed=7) == bootstrap_p_value(
        baseline, treatment, seed=7
    )
    # A small class gains everything, a large class loses a little: pooled over images the treatment
    # is worse, in mean per-class accuracy (each class weighted equally) it is better.
    groups = np.r_[np.zeros(10, int), np.ones(110, int)]
    base = np.zeros((5, 120))
    base[:, 10:] = 1
    gain = base.copy()
    gain[:, :10] = 1
    gain[:, 10:50] = 0
    assert bootstrap_p_value(base, gain) > 0.99
    assert bootstrap_p_value(base, gain, groups=groups) < 0.01


def test_unpaired_inputs_are_refused():
    with pytest.raises(ValueError, match="paired"):
        paired_difference(np.zeros((5, 10)), np.zeros((4, 10)))
    with pytest.raises(ValueError, match="groups"):
        bootstrap_p_value(np.zeros((5, 10)), np.ones((5, 10)), groups=[0, 1])
