"""Measuring: the test-set evaluators (:mod:`.evaluators`), pseudo-label quality against ground
truth (:mod:`.pseudo_label_quality`: one matcher, one precision and recall), the comparison of
scoring modes (:mod:`.mode_comparison`), and the noise of one evaluation: the VOC AP50 and its
bootstrap sd over test images (:mod:`.noise`, pure NumPy) from the per-image detections that
:mod:`.detections` collects (tools/eval_noise.py).

This file imports nothing, as :mod:`imagescore_det.data` and :mod:`imagescore_det.detection`:
import the module you need.
"""
