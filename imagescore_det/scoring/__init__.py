"""The image score: pure PyTorch + NumPy, no Detectron2 (docs/method.md §1)."""

from . import constants
from .class_references import ClassReferences
from .recorder import ActivationRecorder, adaptive_average_pool, recordable_layers
from .reference import Reference, ReferenceBuilder, all_reduce_builders
from .select import count_to_keep, rank_by_score, select_per_class, select_top_fraction

__all__ = [
    "constants",
    "ActivationRecorder",
    "recordable_layers",
    "adaptive_average_pool",
    "Reference",
    "ReferenceBuilder",
    "all_reduce_builders",
    "ClassReferences",
    "count_to_keep",
    "rank_by_score",
    "select_per_class",
    "select_top_fraction",
]
