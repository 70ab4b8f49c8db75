"""Small-input classifiers and the layers the image score records from them."""
import pytest
import torch
from torch import nn

from imagescore_det.classification import build_model, recorded_layers
from imagescore_det.scoring import ActivationRecorder


@pytest.mark.parametrize(
    "name, in_channels, size, num_layers",
    [("small_cnn", 1, 8, 5), ("vgg16", 3, 32, 16), ("vgg16_bn", 3, 32, 16), ("resnet18", 3, 32, 10)],
)
def test_recorded_layers_give_one_activation_per_image_ending_with_the_logits(name, in_channels, size, num_layers):
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
    assert layers == ["relu"] + ["layer%d.%d" % (s, b) for s in range(1, 5) for b in range(2)] + ["fc"]


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
