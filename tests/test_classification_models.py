"""Small-input classifiers and the layers the image score records from them."""

import pytest
import torch
from torch import nn

from imagescore_det.classification import build_model, recorded_layers
from imagescore_det.scoring import ActivationRecorder


@pytest.mark.parametrize(
    "name, in_channels, size, num_layers",
    [
        ("small_cnn", 1, 8, 5),
        ("vgg_small", 1, 28, 9),
        ("vgg16", 3, 32, 16),
        ("vgg16_bn", 3, 32, 16),
        ("resnet18", 3, 32, 10),
    ],
)
def test_recorded_layers_give_one_activation_per_image_ending_with_the_logits(
    name, in_channels, size, num_layers
):
    torch.manual_seed(0)
    model = build_model(name, 10, in_channels).eval()
    layers = recorded_layers(model)
    assert len(layers) == num_layers
    recorder = ActivationRecorder(model, layers, grid=0)
    images = torch.randn(2, in_channels, size, size)
    with torch.inference_mode(), recorder:
        logits = model(images)
    acts = recorder.pop()
    assert logits.shape == (2, 10)
    assert torch.equal(acts[layers[-1]], logits)
    assert all(len(act) == 2 for act in acts.values())
    assert all(float(acts[name].min()) >= 0 for name in layers[:-1])  # after the activation
    assert acts[layers[0]].shape[-2:] == (size, size)  # small-input stems keep full resolution


def test_resnet_records_the_stem_and_every_block():
    layers = recorded_layers(build_model("resnet18", 10, 3))
    assert layers == ["relu"] + ["layer%d.%d" % (s, b) for s in range(1, 5) for b in range(2)] + [
        "fc"
    ]


def test_narrow_resnet18_keeps_the_block_structure_with_scaled_widths_and_a_strided_stem():
    model = build_model("resnet18", 10, 1, width=8, stem_stride=2).eval()
    reference = build_model("resnet18", 10, 1)

    def names(m):
        return [
            name
            for name, module in m.named_modules()
            if isinstance(module, (nn.Conv2d, nn.BatchNorm2d))
        ]

    assert names(model) == names(reference)  # same layers, same names, so the same recorded layers
    assert [
        model.layer1[0].conv1.out_channels,
        model.layer4[1].conv2.out_channels,
        model.fc.in_features,
    ] == [8, 64, 64]
    recorder = ActivationRecorder(model, recorded_layers(model), grid=0)
    with torch.inference_mode(), recorder:
        model(torch.randn(2, 1, 28, 28))
    acts = recorder.pop()
    assert acts["relu"].shape == (2, 8, 14, 14) and acts["layer4.1"].shape == (2, 64, 2, 2)


def test_width_of_a_fixed_width_model_is_refused():
    with pytest.raises(ValueError, match="MODEL.WIDTH"):
        build_model("vgg16", 10, 3, width=8)


def test_vgg16_keeps_thirteen_convolutions_and_batch_norm_comes_before_the_recorded_relu():
    model = build_model("vgg16_bn", 10, 3)
    modules = dict(model.named_modules())
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 13
    for name in recorded_layers(model)[:13]:
        index = int(name.split(".")[-1])
        assert isinstance(modules["features.%d" % (index - 1)], nn.BatchNorm2d)


def test_unknown_model_is_refused():
    with pytest.raises(ValueError, match="MODEL.NAME"):
        build_model("alexnet", 10, 3)
