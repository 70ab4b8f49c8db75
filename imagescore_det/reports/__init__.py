"""Plots and tables people would rather see than read (matplotlib Agg; no Detectron2 here).

Nothing is imported here: ``render`` and ``classification`` are also run with ``python -m``, and a
module the package had already imported would be loaded a second time as ``__main__``.
"""
