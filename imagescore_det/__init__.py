"""imagescore_det: semi-supervised object detection driven by the image score.

The scoring core (:mod:`imagescore_det.scoring`) and the classification mode work with
PyTorch alone; the Detectron2 integration registers its backbones when Detectron2 is installed.
"""

from .scoring import ActivationRecorder, Reference, ReferenceBuilder
from .utils.detectron2_import import detectron2_available

__all__ = ["ActivationRecorder", "Reference", "ReferenceBuilder", "detectron2_available"]
__version__ = "0.1.0"

if detectron2_available():
    from . import modeling  # noqa: F401  (registration: backbones, meta-architecture, heads)
    from .config import add_imagescore_config, build_config
    from .data import voc  # noqa: F401  (registration: the synthetic VOC-format datasets)

    __all__ += ["add_imagescore_config", "build_config"]
