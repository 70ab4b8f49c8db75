"""The one place that says what to do when Detectron2 is missing.

Detectron2 is on no package registry, so ``setup.py`` cannot list it; every module that needs
it calls :func:`require_detectron2` first and fails with the same actionable message.
"""
import importlib.util

INSTALL_GUIDE = "https://detectron2.readthedocs.io/en/latest/tutorials/install.html"


def detectron2_available() -> bool:
    return importlib.util.find_spec("detectron2") is not None


def require_detectron2() -> None:
    """Raise ImportError, linking the official installation guide, when Detectron2 is absent."""
    if not detectron2_available():
        raise ImportError(
            "imagescore_det's Detectron2 integration (config, modeling, engine, data registration, tools) "
            "needs Detectron2, which is not installed and is not on PyPI. Install it from source "
            "following the official guide: %s (the scoring core and the classification mode work "
            "without it)." % INSTALL_GUIDE
        )
