"""Detection mode of the image score, over Detectron2 models and datasets (docs/method.md §2),
mirroring :mod:`imagescore_det.classification`:

- :mod:`.passes`: the one recording pass (one forward per batch, pluggable recorders);
- :mod:`.modes`: image mode and box mode, and ``score_unlabelled``, which dispatches through
  their table;
- :mod:`.ranking`: box scores to image rankings (pure NumPy);
- :mod:`.selection`: keeping the best images and writing their pseudo labels.

This file imports nothing, so that the pure :mod:`.ranking` imports without Detectron2.
"""
