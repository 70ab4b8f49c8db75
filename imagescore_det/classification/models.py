"""Classifiers for small inputs, and the layers whose activations the image score uses (SPEC §1).

torchvision's VGG16 and ResNet18 are built for 224x224 ImageNet images; for 32x32 inputs VGG16
keeps its 13 convolutions but gets a 512-wide classifier on the 1x1 map left after five poolings,
and ResNet18's stem loses its stride and max pooling. No weights are downloaded (weights=None).
"""
from typing import List

from torch import nn
from torchvision.models import ResNet, resnet18, vgg16, vgg16_bn

__all__ = ["SmallCNN", "build_model", "recorded_layers", "MODEL_NAMES"]

MODEL_NAMES = ("small_cnn", "vgg16", "vgg16_bn", "resnet18")


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


def _small_input_resnet18(num_classes: int, in_channels: int) -> nn.Module:
    model = resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def build_model(name: str, num_classes: int, in_channels: int) -> nn.Module:
    """``name`` is one of :data:`MODEL_NAMES`; weights are freshly initialised from torch's RNG."""
    if name == "small_cnn":
        return SmallCNN(num_classes, in_channels)
    if name in ("vgg16", "vgg16_bn"):
        return _small_input_vgg(name == "vgg16_bn", num_classes, in_channels)
    if name == "resnet18":
        return _small_input_resnet18(num_classes, in_channels)
    raise ValueError("MODEL.NAME must be one of %s, got %r" % (MODEL_NAMES, name))


def recorded_layers(model: nn.Module) -> List[str]:
    """Module names to record: each activation's output, then the logits layer.

    ResNet: the stem's ReLU and every residual block (a block reuses one ReLU module, so the
    block itself, whose output follows that ReLU, is recorded). Other models: every ``nn.ReLU``
    (conv and hidden linear layers, after batch norm where present) and the last ``nn.Linear``.
    """
    if isinstance(model, ResNet):
        stages = ("layer1", "layer2", "layer3", "layer4")
        blocks = ["%s.%d" % (stage, i) for stage in stages for i in range(len(getattr(model, stage)))]
        return ["relu"] + blocks + ["fc"]
    relus = [name for name, module in model.named_modules() if isinstance(module, nn.ReLU)]
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not relus or not linears:
        raise ValueError("%s has no nn.ReLU or nn.Linear modules to record" % type(model).__name__)
    return relus + [linears[-1]]
