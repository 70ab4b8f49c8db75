"""Measuring: the test-set evaluators (:mod:`.evaluators`), pseudo-label quality against ground
truth (:mod:`.pseudo_label_quality`: one matcher, one precision and recall) and the comparison of
scoring modes (:mod:`.mode_comparison`).

This file imports nothing, as :mod:`imagescore_det.data` and :mod:`imagescore_det.detection`:
import the module you need.
"""
