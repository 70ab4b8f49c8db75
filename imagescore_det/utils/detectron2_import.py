"""The one place that says what to do when Detectron2 is missing.

Detectron2 is on no package registry, so ``setup.py`` cannot list it; every module that needs
it calls :func:`require_detectron2` first and fails with the same actionable message, and every
tool calls :func:`require_detectron2_or_help` so that its ``--help`` works without it.
"""

import importlib.util
import sys

INSTALL_GUIDE = "https://detectron2.readthedocs.io/en/latest/tutorials/install.html"
#: The Detectron2 commit this project is tested with (tools/setup_env.sh installs it).
DETECTRON2_COMMIT = "02b5c4e295e990042a714712c21dc79b731e8833"
INSTALL_HINT = (
    "run `bash tools/setup_env.sh` in this repository (it installs Detectron2 from $DETECTRON2_WHEEL or "
    "from its official source at commit %s), or follow %s" % (DETECTRON2_COMMIT, INSTALL_GUIDE)
)


def detectron2_available() -> bool:
    return importlib.util.find_spec("detectron2") is not None


def require_detectron2() -> None:
    """Raise ImportError, saying how to install Detectron2, when it is absent."""
    if not detectron2_available():
        raise ImportError(
            "imagescore_det's Detectron2 integration (config, modeling, engine, data registration, tools) "
            "needs Detectron2, which is not installed and is not on PyPI: %s. The scoring core and the "
            "classification mode work without it." % INSTALL_HINT
        )


def require_detectron2_or_help(description: str, argv=None) -> None:
    """For tools that need Detectron2: without it, ``-h``/``--help`` prints ``description`` and what
    the tool needs, then exits 0; any other call raises :func:`require_detectron2`'s ImportError."""
    if detectron2_available():
        return
    args = sys.argv[1:] if argv is None else argv
    if "-h" in args or "--help" in args:
        print(description.strip())
        print(
            "\nThis tool needs Detectron2, which is not installed here: %s. With Detectron2 installed, "
            "--help lists every option." % INSTALL_HINT
        )
        sys.exit(0)
    require_detectron2()
