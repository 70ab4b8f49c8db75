"""The score histogram of a detection run: where the kept images sit among all scored ones.

The paper reads its image scores off histograms (its best images fall in (-0.7, 0]); this plot
shows the same picture for one scored set, with the selected images stacked in their own colour.
"""

from typing import Sequence

import numpy as np

from ..utils.io import atomic_write

__all__ = ["plot_score_histogram"]


def plot_score_histogram(
    scores: Sequence[float], selected: Sequence[bool], path: str, *, title: str = "", bins: int = 40
) -> None:
    """Write a PNG histogram of ``scores`` (higher is better), selected images stacked apart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = np.asarray(scores, dtype=np.float64)
    selected = np.asarray(selected, dtype=bool)
    if scores.ndim != 1 or len(scores) == 0 or selected.shape != scores.shape:
        raise ValueError(
            "need one selected flag per score and at least one score, got %d and %d"
            % (scores.size, selected.size)
        )
    figure, axes = plt.subplots(figsize=(7, 4))
    edges = np.histogram_bin_edges(scores, bins=bins)
    axes.hist(
        [scores[selected], scores[~selected]],
        bins=edges,
        stacked=True,
        color=["tab:green", "tab:gray"],
        label=["selected (%d)" % selected.sum(), "not selected (%d)" % (~selected).sum()],
    )
    if selected.any():
        axes.axvline(
            scores[selected].min(),
            color="black",
            linestyle="--",
            linewidth=1,
            label="selection cut",
        )
    axes.set_xlabel("image score (higher is better, at most 0)")
    axes.set_ylabel("images")
    axes.set_title(title or "Image scores of %d images" % len(scores))
    axes.legend()
    figure.tight_layout()
    with atomic_write(path, "wb") as f:
        figure.savefig(f, format="png", dpi=100)
    plt.close(figure)
