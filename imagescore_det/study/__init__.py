"""The side-by-side study of semi-supervised arms: :mod:`.runner` trains them (Detectron2),
:mod:`.summary` turns their evaluations into tables and curves (pure NumPy, no Detectron2).

This file imports nothing, so that :mod:`.summary` imports without Detectron2.
"""
