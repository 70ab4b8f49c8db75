"""Plots and tables people would rather see than read (matplotlib Agg; no Detectron2 here)."""

from .classification import write_classification_report

__all__ = ["write_classification_report"]
