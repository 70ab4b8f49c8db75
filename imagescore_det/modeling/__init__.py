"""Detectron2 modeling: the VGG16 backbone, the recording wrapper, VGG16 weight conversion and the
components that train on pseudo labels.

Importing this package registers ``build_vgg16_backbone`` and ``build_imagescore_backbone``
(BACKBONE_REGISTRY), ``ImageScoreRCNN`` (META_ARCH_REGISTRY), ``ImageScoreRPN``
(PROPOSAL_GENERATOR_REGISTRY), ``ImageScoreStandardROIHeads`` and ``ImageScoreRes5ROIHeads``
(ROI_HEADS_REGISTRY).
"""

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from .meta_arch import ImageScoreRCNN
from .pseudo_heads import (
    ImageScoreRes5ROIHeads,
    ImageScoreRPN,
    ImageScoreStandardROIHeads,
    PseudoTargets,
)
from .recording import RecordingBackbone, build_imagescore_backbone, default_recorded_layers
from .vgg import VGG16_STAGES, VGG16Backbone, build_vgg16_backbone, vgg16_conv_names
from .weights import convert_vgg16_file, convert_vgg16_state_dict, vgg16_key_map

__all__ = [
    "ImageScoreRCNN",
    "ImageScoreRPN",
    "ImageScoreStandardROIHeads",
    "ImageScoreRes5ROIHeads",
    "PseudoTargets",
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
