"""Classifiers for small inputs, and the layers whose activations the image score uses (docs/method.md §1).

torchvision's VGG16 and ResNet18 are built for 224x224 ImageNet images; for 32x32 inputs VGG16
keeps its 13 convolutions but gets a 512-wide classifier on the 1x1 map left after five poolings,
and ResNet18's stem loses its stride and max pooling. No weights are downloaded (weights=None).
Where one CPU thread must train on tens of thousands of images, ``vgg_small`` (VGG's layout in three
stages) and ResNet18 with a narrower base width and an optional stride-2 stem keep the architecture
and cut the cost.
"""

from typing import List

from torch import nn
from torchvision.models import ResNet, vgg16, vgg16_bn
from torchvision.models.resnet import BasicBlock

__all__ = [
    "SmallCNN",
    "SmallVGG",
    "SmallInputResNet18",
    "build_model",
    "recorded_layers",
    "MODEL_NAMES",
]

MODEL_NAMES = ("small_cnn", "vgg_small", "vgg16", "vgg16_bn", "resnet18")
#: Base width (channels of the first stage) of each model when ``MODEL.WIDTH`` is 0.
DEFAULT_WIDTHS = {"small_cnn": 16, "vgg_small": 16, "resnet18": 64}


class SmallCNN(nn.Module):
    """Three convolutions and two linear layers for 8x8 digits; every activation its own module."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(4 * width * 4, 64),
            nn.ReLU(),
            nn.Dropout(0.25),
            nn.Linear(64, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class SmallVGG(nn.Module):
    """VGG's layout for 28x28 inputs: three stages of two 3x3 conv + ReLU and a max pooling
    (widths w, 2w, 4w), then fc6, ReLU, dropout, fc7, ReLU, dropout and the logits (8w wide)."""

    def __init__(
        self, num_classes: int = 10, in_channels: int = 1, width: int = 16, input_size: int = 28
    ):
        super().__init__()
        layers, channels = [], in_channels
        for stage in range(3):
            for _ in range(2):
                layers += [nn.Conv2d(channels, width * 2**stage, 3, padding=1), nn.ReLU()]
                channels = width * 2**stage
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        side = input_size // 8
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * side * side, 8 * width),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(8 * width, 8 * width),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(8 * width, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class SmallInputResNet18(ResNet):
    """torchvision's ResNet18 (``BasicBlock``, [2, 2, 2, 2], its ``_make_layer`` and ``forward``) with
    a 3x3 stem of stride ``stem_stride``, no max pooling and stage widths w, 2w, 4w, 8w.

    ``ResNet.__init__`` fixes the width at 64, so the attributes ``_make_layer`` reads are set here;
    weights are initialised as torchvision does (He for convolutions, 1/0 for batch norm).
    """

    def __init__(
        self, num_classes: int = 10, in_channels: int = 3, width: int = 64, stem_stride: int = 1
    ):
        nn.Module.__init__(self)
        self._norm_layer, self.dilation, self.groups, self.base_width = nn.BatchNorm2d, 1, 1, 64
        self.inplanes = width
        self.conv1 = nn.Conv2d(
            in_channels, width, kernel_size=3, stride=stem_stride, padding=1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity()
        self.layer1 = self._make_layer(BasicBlock, width, 2)
        self.layer2 = self._make_layer(BasicBlock, 2 * width, 2, stride=2)
        self.layer3 = self._make_layer(BasicBlock, 4 * width, 2, stride=2)
        self.layer4 = self._make_layer(BasicBlock, 8 * width, 2, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * width, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)


def _small_input_vgg(batch_norm: bool, num_classes: int, in_channels: int) -> nn.Module:
    model = (vgg16_bn if batch_norm else vgg16)(weights=None)
    if in_channels != 3:
        model.features[0] = nn.Conv2d(in_channels, 64, kernel_size=3, padding=1)
    model.avgpool = nn.AdaptiveAvgPool2d(1)
    # Same layout as torchvision's classifier (fc6, ReLU, Dropout, fc7, ReLU, Dropout, logits), 512 wide.
    model.classifier = nn.Sequential(
        nn.Linear(512, 512),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(512, 512),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(512, num_classes),
    )
    return model


def build_model(
    name: str,
    num_classes: int,
    in_channels: int,
    *,
    width: int = 0,
    stem_stride: int = 1,
    input_size: int = 28,
) -> nn.Module:
    """``name`` is one of :data:`MODEL_NAMES`; weights are freshly initialised from torch's RNG.

    ``width`` 0 means the model's usual width (:data:`DEFAULT_WIDTHS`; VGG16 has only its own);
    ``stem_stride`` applies to ResNet18, ``input_size`` (square side) to ``vgg_small``.
    """
    if name not in MODEL_NAMES:
        raise ValueError("MODEL.NAME must be one of %s, got %r" % (MODEL_NAMES, name))
    if width and name not in DEFAULT_WIDTHS:
        raise ValueError(
            "MODEL.WIDTH must be 0 for %s (it has a fixed width), got %d" % (name, width)
        )
    width = width or DEFAULT_WIDTHS.get(name, 0)
    if name == "small_cnn":
        return SmallCNN(num_classes, in_channels, width)
    if name == "vgg_small":
        return SmallVGG(num_classes, in_channels, width, input_size)
    if name == "resnet18":
        return SmallInputResNet18(num_classes, in_channels, width, stem_stride)
    return _small_input_vgg(name == "vgg16_bn", num_classes, in_channels)


def recorded_layers(model: nn.Module) -> List[str]:
    """Module names to record: each activation's output, then the logits layer.

    ResNet: the stem's ReLU and every residual block (a block reuses one ReLU module, so the
    block itself, whose output follows that ReLU, is recorded). Other models: every ``nn.ReLU``
    (conv and hidden linear layers, after batch norm where present) and the last ``nn.Linear``.
    """
    if isinstance(model, ResNet):
        stages = ("layer1", "layer2", "layer3", "layer4")
        blocks = [
            "%s.%d" % (stage, i) for stage in stages for i in range(len(getattr(model, stage)))
        ]
        return ["relu"] + blocks + ["fc"]
    relus = [name for name, module in model.named_modules() if isinstance(module, nn.ReLU)]
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not relus or not linears:
        raise ValueError("%s has no nn.ReLU or nn.Linear modules to record" % type(model).__name__)
    return relus + [linears[-1]]
