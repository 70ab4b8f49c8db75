"""Detectron2 modeling: the VGG16 backbone, the recording wrapper and VGG16 weight conversion.

Importing this package registers ``build_vgg16_backbone`` and ``build_imagescore_backbone``
in Detectron2's BACKBONE_REGISTRY.
"""

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from .recording import RecordingBackbone, build_imagescore_backbone, default_recorded_layers
from .vgg import VGG16_STAGES, VGG16Backbone, build_vgg16_backbone, vgg16_conv_names
from .weights import convert_vgg16_file, convert_vgg16_state_dict, vgg16_key_map

__all__ = [
    "RecordingBackbone",
    "build_imagescore_backbone",
    "default_recorded_layers",
    "VGG16_STAGES",
    "VGG16Backbone",
    "build_vgg16_backbone",
    "vgg16_conv_names",
    "convert_vgg16_file",
    "convert_vgg16_state_dict",
    "vgg16_key_map",
]
