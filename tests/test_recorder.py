"""ActivationRecorder: hooks only inside the block, names checked, padding cropped before pooling."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from imagescore_det.scoring import (
    ActivationRecorder,
    ReferenceBuilder,
    adaptive_average_pool,
    recordable_layers,
)


def padding_neutral_net(dtype=torch.float32):
    """Bias-free convolutions with ReLU: zero padding stays zero, so a crop of a padded batch is exact.

    Stride 2 after the first layer keeps border pixels out of the last valid row and column of a
    stride-aligned image, which stride-1 stacks like VGG16's do not.
    """
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1, bias=False),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False),
            nn.ReLU(),
        )
        .to(dtype)
        .eval()
    )


LAYERS = ["1", "3", "5"]


def record(net, batch, image_sizes=None, grid=4):
    recorder = ActivationRecorder(net, LAYERS, grid=grid)
    recorder.set_image_sizes(image_sizes)
    with torch.inference_mode(), recorder:
        net(batch)
    return recorder.pop()


def pad_batch(images):
    """Pad at bottom and right to a common size, as Detectron2's ImageList does."""
    height = max(image.shape[1] for image in images)
    width = max(image.shape[2] for image in images)
    batch = torch.zeros(len(images), 3, height, width, dtype=images[0].dtype)
    for index, image in enumerate(images):
        batch[index, :, : image.shape[1], : image.shape[2]] = image
    return batch, [tuple(image.shape[1:]) for image in images]


def test_image_scores_the_same_alone_in_a_batch_and_padded():
    """In float64 both paths agree to ~1e-15 on any CPU, so scores must be equal, not merely close;
    only a correct crop of each padded activation to its image's region gets there."""
    net = padding_neutral_net(torch.float64)
    generator = torch.Generator().manual_seed(1)
    sizes = [(32, 48), (64, 32), (40, 40), (24, 56)]
    images = [torch.rand(3, h, w, generator=generator, dtype=torch.float64) for h, w in sizes]
    alone = [record(net, image.unsqueeze(0)) for image in images]
    batch, image_sizes = pad_batch(images)
    padded = record(net, batch, image_sizes)
    reference = ReferenceBuilder(grid=4).update(padded).finalize()
    for index, acts in enumerate(alone):
        for layer in LAYERS:
            assert torch.allclose(acts[layer][0], padded[layer][index], rtol=0, atol=1e-12), (
                index,
                layer,
            )
    alone_scores = torch.cat([reference.score(acts) for acts in alone])
    assert torch.equal(alone_scores, reference.score(padded))
    # a larger canvas (more padding) changes nothing either
    bigger = torch.zeros(4, 3, 96, 96, dtype=torch.float64)
    bigger[:, :, : batch.shape[2], : batch.shape[3]] = batch
    assert torch.equal(reference.score(record(net, bigger, image_sizes)), alone_scores)


def test_without_image_sizes_padding_would_leak_into_the_pooled_map():
    net = padding_neutral_net()
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    batch = torch.zeros(1, 3, 64, 64)
    batch[:, :, :32, :32] = image
    alone = record(net, image)["5"]
    assert not torch.allclose(record(net, batch)["5"], alone, atol=1e-3)
    assert torch.allclose(record(net, batch, [(32, 32)])["5"], alone, atol=1e-5)


def test_grid_zero_keeps_native_size_and_refuses_mixed_sizes():
    net = padding_neutral_net()
    acts = record(net, torch.rand(2, 3, 16, 16), grid=0)
    assert acts["1"].shape == (2, 8, 16, 16) and acts["5"].shape == (2, 16, 4, 4)
    batch, image_sizes = pad_batch([torch.rand(3, 16, 16), torch.rand(3, 32, 16)])
    with pytest.raises(ValueError, match="grid=0.*set a grid > 0"):
        record(net, batch, image_sizes, grid=0)


def test_hooks_exist_only_inside_the_block_and_pop_clears():
    net = padding_neutral_net()
    recorder = ActivationRecorder(net, LAYERS, grid=2)
    with recorder:
        assert all(len(net[int(name)]._forward_hooks) == 1 for name in LAYERS)
        net(torch.rand(3, 3, 16, 16))
        net(torch.rand(2, 3, 16, 16))
    assert all(
        not module._forward_hooks and not module._forward_pre_hooks for module in net.modules()
    )
    net(torch.rand(1, 3, 16, 16))  # outside the block: not recorded
    acts = recorder.pop()
    assert {name: tuple(value.shape) for name, value in acts.items()} == {
        "1": (5, 8, 2, 2),
        "3": (5, 8, 2, 2),
        "5": (5, 16, 2, 2),
    }
    with pytest.raises(ValueError, match="produced no output"):
        recorder.pop()


def test_recorded_values_survive_in_place_activations():
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True))
    recorder = ActivationRecorder(net, ["0"])
    x = torch.randn(3, 4)
    with torch.inference_mode(), recorder:
        net(x)
    assert torch.allclose(recorder.pop()["0"], net[0](x))  # pre-ReLU values, not overwritten


def test_unknown_layer_lists_close_matches():
    net = nn.Sequential()
    net.add_module("conv1_1", nn.Conv2d(3, 4, 3))
    net.add_module("conv1_2", nn.Conv2d(4, 4, 3))
    assert recordable_layers(net) == ["conv1_1", "conv1_2"]
    with pytest.raises(
        ValueError, match="no module named 'conv1_3'.*close matches: conv1_[12], conv1_[12] "
    ):
        ActivationRecorder(net, ["conv1_3"])


@pytest.mark.parametrize(
    "layers, grid, message", [([], 0, "non-empty"), (["0"], -1, "grid"), (["0", "0"], 0, "twice")]
)
def test_bad_recorder_settings(layers, grid, message):
    with pytest.raises(ValueError, match=message):
        ActivationRecorder(nn.Sequential(nn.ReLU()), layers, grid=grid)


def test_image_sizes_must_match_the_batch():
    net = padding_neutral_net()
    with pytest.raises(ValueError, match="2 sizes but layer '1' saw a batch of 3"):
        record(net, torch.rand(3, 3, 16, 16), [(16, 16), (8, 8)])


@pytest.mark.parametrize(
    "height, width, grid",
    [(150, 150, 8), (75, 38, 8), (6, 7, 8), (1, 1, 8), (9, 20, 3), (16, 16, 4)],
)
def test_pooling_equals_adaptive_average_pooling(height, width, grid):
    activation = torch.rand(
        2, 5, height, width, generator=torch.Generator().manual_seed(height * width)
    )
    assert torch.allclose(
        adaptive_average_pool(activation, grid),
        F.adaptive_avg_pool2d(activation, grid),
        rtol=1e-5,
        atol=1e-6,
    )
