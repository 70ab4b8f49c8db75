"""Bootstrap test of an accuracy difference between two training modes (docs/method.md §3)."""

from typing import Optional, Sequence

import numpy as np

__all__ = ["bootstrap_p_value", "paired_difference"]


def _as_seed_by_image(values, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[None, :]
    if values.ndim != 2 or values.size == 0:
        raise ValueError(
            "%s must be [seeds, images] (or [images]) and non-empty, got shape %s"
            % (name, values.shape)
        )
    return values


def paired_difference(baseline, treatment) -> np.ndarray:
    """``treatment - baseline`` as a float [seeds, images] array, after checking the two are paired."""
    baseline = _as_seed_by_image(baseline, "baseline")
    treatment = _as_seed_by_image(treatment, "treatment")
    if baseline.shape != treatment.shape:
        raise ValueError(
            "baseline %s and treatment %s must be paired (same seeds, same images)"
            % (baseline.shape, treatment.shape)
        )
    return treatment - baseline


def bootstrap_p_value(
    baseline,
    treatment,
    *,
    groups: Optional[Sequence] = None,
    resamples: int = 10000,
    seed: int = 0,
) -> float:
    """One-sided p-value of "treatment improves mean (per-group) accuracy over baseline".

    ``baseline`` and ``treatment`` are [seeds, images] arrays of per-image correctness (0/1) for
    the same training seeds and the same test images. The statistic is the mean difference; with
    ``groups`` (one class label per image) it is the mean over groups of each group's mean
    difference, i.e. the difference in mean per-class accuracy.

    What is resampled, and why: both seeds and test images, crossed (one draw of seeds and one draw
    of images per resample, images drawn within each group). Test images alone would ignore the
    spread between training runs, which with few labelled images is as large as the test-set
    noise; five seeds alone give a coarse bootstrap that calls any five positive differences
    certain (p = 0). Drawing the same seeds and images for both modes keeps the pairing: seed s is
    the same phase-1 model in both modes, and image i the same test image.

    The p-value is the share of resampled differences below zero, ties counted half (mid-p), so
    identical inputs give exactly 0.5; small values favour the treatment. Range [0, 1].
    """
    difference = paired_difference(baseline, treatment)
    if resamples < 1:
        raise ValueError("resamples must be >= 1, got %r" % (resamples,))
    num_seeds, num_images = difference.shape
    labels = np.zeros(num_images, dtype=np.int64) if groups is None else np.asarray(groups)
    if labels.shape != (num_images,):
        raise ValueError(
            "groups must give one label per image (%d), got shape %s" % (num_images, labels.shape)
        )
    rng = np.random.default_rng(seed)
    seed_counts = rng.multinomial(num_seeds, np.full(num_seeds, 1.0 / num_seeds), size=resamples)
    statistic = np.zeros(resamples)
    group_values = np.unique(labels)
    for value in group_values:
        columns = np.flatnonzero(labels == value)
        image_counts = rng.multinomial(
            len(columns), np.full(len(columns), 1.0 / len(columns)), size=resamples
        )
        per_image = seed_counts @ difference[:, columns]  # [resamples, images]: seed-weighted sums
        statistic += (per_image * image_counts).sum(axis=1) / (num_seeds * len(columns))
    statistic /= len(group_values)
    # Exact zeros (identical modes) must count as ties, not be lost to float rounding.
    statistic[np.isclose(statistic, 0.0, rtol=0.0, atol=1e-12)] = 0.0
    return float(((statistic < 0).sum() + 0.5 * (statistic == 0).sum()) / resamples)
