"""Where datasets live: Detectron2's dataset root, for the modules that need it without Detectron2."""

import os

__all__ = ["datasets_root"]


def datasets_root() -> str:
    """Detectron2's dataset root (``$DETECTRON2_DATASETS``, default ``datasets``), read the way its
    builtin registration reads it."""
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))
