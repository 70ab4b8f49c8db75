"""A backbone wrapper that can record the per-image layers of the backbone it wraps.

Detectron2 builds one backbone from ``MODEL.BACKBONE.NAME``; naming this wrapper there and the
real backbone in ``IMAGESCORE.WRAPPED_BACKBONE`` gives every detector the same way to record
activations without changing its forward pass. Hooks exist only inside the recorder's ``with``
block (see :class:`~imagescore_det.scoring.ActivationRecorder`), so training pays nothing.
"""

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from typing import Dict, List, Sequence

import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, FPN, Backbone, ResNet

from imagescore_det.scoring import ActivationRecorder, constants

from .vgg import VGG16Backbone

__all__ = ["RecordingBackbone", "build_imagescore_backbone", "default_recorded_layers"]


def default_recorded_layers(backbone: Backbone) -> List[str]:
    """The per-image layers of ``backbone`` that the image score records by default (docs/method.md §1).

    VGG16: conv1_1 ... conv5_3 (each after its ReLU). Detectron2 ResNet: the stem and every
    residual block of the stages the backbone runs (res5 of a C4 model runs per box inside
    the ROI heads, so it is not in the backbone and never recorded). FPN: its bottom-up
    network's layers, under ``bottom_up.``. Other backbones have no default.
    """
    if isinstance(backbone, VGG16Backbone):
        return list(backbone.conv_names)
    if isinstance(backbone, ResNet):
        blocks = [
            "%s.%d" % (name, i)
            for name, stage in zip(backbone.stage_names, backbone.stages)
            for i in range(len(stage))
        ]
        return ["stem"] + blocks
    if isinstance(backbone, FPN):
        return ["bottom_up." + name for name in default_recorded_layers(backbone.bottom_up)]
    raise ValueError(
        "no default recorded layers for a %s backbone: set IMAGESCORE.LAYERS to the names of its "
        "modules whose output is one activation map per image (imagescore_det.scoring.recordable_layers "
        "lists them)" % type(backbone).__name__
    )


class RecordingBackbone(Backbone):
    """Forwards to ``body`` unchanged and makes recorders for its ``layers``.

    Args:
        body: the backbone that does the work.
        layers: module names inside ``body`` to record; checked here, so a typo fails when the
            model is built rather than when scoring starts.
    """

    def __init__(self, body: Backbone, layers: Sequence[str]):
        super().__init__()
        self.body = body
        self.layers = list(layers)
        try:
            ActivationRecorder(body, self.layers)  # checks the names; attaches nothing
        except ValueError as e:
            raise ValueError("IMAGESCORE.LAYERS: %s" % e) from e

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.body(x)

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return self.body.output_shape()

    @property
    def size_divisibility(self) -> int:
        return self.body.size_divisibility

    @property
    def padding_constraints(self) -> Dict[str, int]:
        return self.body.padding_constraints

    def recorder(self, grid: int = constants.GRID) -> ActivationRecorder:
        """A fresh recorder of ``self.layers``; its input is the padded image batch ``body`` receives."""
        return ActivationRecorder(self.body, self.layers, grid=grid)


@BACKBONE_REGISTRY.register()
def build_imagescore_backbone(cfg, input_shape: ShapeSpec) -> RecordingBackbone:
    """Build ``cfg.IMAGESCORE.WRAPPED_BACKBONE`` and wrap it to record ``IMAGESCORE.LAYERS`` (or its defaults)."""
    name = cfg.IMAGESCORE.WRAPPED_BACKBONE
    if name == build_imagescore_backbone.__name__ or name not in BACKBONE_REGISTRY:
        registered = sorted(
            n for n, _ in BACKBONE_REGISTRY if n != build_imagescore_backbone.__name__
        )
        raise ValueError(
            "IMAGESCORE.WRAPPED_BACKBONE=%r must name another registered backbone builder: %s"
            % (name, ", ".join(registered))
        )
    body = BACKBONE_REGISTRY.get(name)(cfg, input_shape)
    return RecordingBackbone(body, list(cfg.IMAGESCORE.LAYERS) or default_recorded_layers(body))
