"""VGG16 as a Detectron2 backbone: the detector of the paper's §3.2 (Faster R-CNN, VGG16).

conv1_1 ... conv5_3 with a 2x2 max-pool after conv1_2, conv2_2, conv3_3 and conv4_3, and no pool5,
so the one output feature has stride 16 and 512 channels; the box head (fc6/fc7) is Detectron2's
``FastRCNNConvFCHead`` with two 4096-wide layers (see configs/Base-VGG16.yaml). Each conv and its
ReLU form one module named like the paper's layer, so that module's output is exactly the
post-activation layer that the image score records.
"""

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from typing import Dict, List, Tuple

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d, ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone

__all__ = ["VGG16_STAGES", "vgg16_conv_names", "VGG16Backbone", "build_vgg16_backbone"]

#: (output channels, number of 3x3 convs) of each VGG16 stage; a 2x2 max-pool follows every stage but the last.
VGG16_STAGES: Tuple[Tuple[int, int], ...] = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


def vgg16_conv_names() -> List[str]:
    """``["conv1_1", "conv1_2", "conv2_1", ..., "conv5_3"]``: the 13 layer names, in forward order."""
    return [
        "conv%d_%d" % (stage, i)
        for stage, (_, n) in enumerate(VGG16_STAGES, start=1)
        for i in range(1, n + 1)
    ]


class VGG16Backbone(Backbone):
    """VGG16's convolutional part, returning ``{out_feature: conv5_3 output}`` (stride 16).

    Args:
        in_channels: image channels.
        width_divisor: divides every stage's width (1 = VGG16; larger values give a slim
            network for quick experiments and tests); must divide 64.
        out_feature: name of the output feature (what RPN / ROI heads' IN_FEATURES name).
        freeze_at: number of stages whose weights stay fixed, counted from conv1_x; the
            paper's Caffe setup (py-faster-rcnn) freezes conv1_x and conv2_x, i.e. 2.
    """

    def __init__(
        self,
        in_channels: int = 3,
        *,
        width_divisor: int = 1,
        out_feature: str = "vgg_conv5",
        freeze_at: int = 0,
    ):
        super().__init__()
        if (
            int(width_divisor) != width_divisor
            or width_divisor < 1
            or VGG16_STAGES[0][0] % width_divisor
        ):
            raise ValueError(
                "width_divisor (IMAGESCORE.VGG.WIDTH_DIVISOR) must be a positive integer dividing 64, got %r"
                % (width_divisor,)
            )
        self.conv_names = tuple(vgg16_conv_names())
        self.stage_sizes = tuple(n for _, n in VGG16_STAGES)
        channels = in_channels
        for name, width in zip(self.conv_names, (w for w, n in VGG16_STAGES for _ in range(n))):
            conv = Conv2d(
                channels, width // int(width_divisor), kernel_size=3, padding=1, activation=F.relu
            )
            weight_init.c2_msra_fill(
                conv
            )  # torchvision's VGG init: Kaiming normal (fan_out), zero bias
            self.add_module(name, conv)
            channels = conv.out_channels
        self._out_features = [out_feature]
        self._out_feature_channels = {out_feature: channels}
        self._out_feature_strides = {out_feature: 2 ** (len(VGG16_STAGES) - 1)}
        self.freeze(freeze_at)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        convs = iter(self.conv_names)
        for stage, size in enumerate(self.stage_sizes, start=1):
            for _ in range(size):
                x = getattr(self, next(convs))(x)
            if stage < len(self.stage_sizes):
                x = F.max_pool2d(x, kernel_size=2, stride=2)
        return {self._out_features[0]: x}

    def freeze(self, freeze_at: int = 0) -> "VGG16Backbone":
        """Stop gradients in the first ``freeze_at`` stages (1 = conv1_x, 2 = conv1_x and conv2_x, ...)."""
        frozen_stages = {"conv%d" % stage for stage in range(1, freeze_at + 1)}
        for name in self.conv_names:
            if name.split("_")[0] in frozen_stages:
                getattr(self, name).requires_grad_(False)
        return self


@BACKBONE_REGISTRY.register()
def build_vgg16_backbone(cfg, input_shape: ShapeSpec) -> VGG16Backbone:
    """VGG16 from ``cfg.IMAGESCORE.VGG`` and ``cfg.MODEL.BACKBONE.FREEZE_AT`` (see :func:`add_imagescore_config`)."""
    return VGG16Backbone(
        input_shape.channels,
        width_divisor=cfg.IMAGESCORE.VGG.WIDTH_DIVISOR,
        out_feature=cfg.IMAGESCORE.VGG.OUT_FEATURE,
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
    )
