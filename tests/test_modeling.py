"""Modeling with real Detectron2: the VGG16 backbone, its weight conversion and the recording wrapper."""

import os
import runpy

import pytest
import torch

detectron2 = pytest.importorskip("detectron2")
torchvision = pytest.importorskip("torchvision")

from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.layers import ShapeSpec  # noqa: E402
from detectron2.modeling import BACKBONE_REGISTRY, Backbone, build_backbone, build_model  # noqa: E402
from helpers import REPO, detectron2_voc_cfg, project_cfg, slim_vgg_cfg  # noqa: E402

import imagescore_det  # noqa: E402
from imagescore_det.config import add_imagescore_config  # noqa: E402
from imagescore_det.modeling import (  # noqa: E402
    RecordingBackbone,
    VGG16Backbone,
    convert_vgg16_state_dict,
    default_recorded_layers,
    vgg16_key_map,
)
from imagescore_det.scoring import ActivationRecorder  # noqa: E402

pytestmark = pytest.mark.detectron2

VGG_LAYERS = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
              "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3"]  # fmt: skip
C4_LAYERS = ["stem"] + [
    "res%d.%d" % (stage, i) for stage, blocks in ((2, 3), (3, 4), (4, 6)) for i in range(blocks)
]
FPN_LAYERS = ["bottom_up." + name for name in C4_LAYERS + ["res5.0", "res5.1", "res5.2"]]


def hook_count(module):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


# ---------------------------------------------------------------- VGG16 backbone


def test_import_registers_backbones_and_config():
    assert "build_vgg16_backbone" in BACKBONE_REGISTRY
    assert "build_imagescore_backbone" in BACKBONE_REGISTRY
    assert imagescore_det.add_imagescore_config is add_imagescore_config


def test_vgg16_has_stride_16_and_13_post_relu_layers():
    backbone = VGG16Backbone(width_divisor=8).eval()
    assert backbone.output_shape() == {"vgg_conv5": ShapeSpec(channels=64, stride=16)}
    assert default_recorded_layers(backbone) == VGG_LAYERS
    recorder = ActivationRecorder(backbone, VGG_LAYERS)
    with torch.no_grad(), recorder:
        out = backbone(torch.randn(2, 3, 64, 96))["vgg_conv5"]
    assert out.shape == (2, 64, 4, 6)
    acts = recorder.pop()
    for name, act in acts.items():
        stage = int(name[4])
        assert act.shape[-2:] == (64 // 2 ** (stage - 1), 96 // 2 ** (stage - 1)), name
        assert act.min() == 0, "%s is not the output after its ReLU" % name
    assert torch.equal(acts["conv5_3"], out)


@pytest.mark.parametrize("freeze_at,frozen", [(0, []), (2, VGG_LAYERS[:4]), (5, VGG_LAYERS)])
def test_freeze_at_counts_vgg_stages(freeze_at, frozen):
    cfg = project_cfg("Base-VGG16.yaml", "MODEL.BACKBONE.FREEZE_AT", freeze_at)
    backbone = BACKBONE_REGISTRY.get("build_vgg16_backbone")(cfg, ShapeSpec(channels=3))
    assert backbone.output_shape() == {"vgg_conv5": ShapeSpec(channels=512, stride=16)}
    assert (
        sorted(
            {name.split(".")[0] for name, p in backbone.named_parameters() if not p.requires_grad}
        )
        == frozen
    )


def test_width_divisor_must_divide_64():
    cfg = project_cfg("Base-VGG16.yaml", "IMAGESCORE.VGG.WIDTH_DIVISOR", 3)
    with pytest.raises(ValueError, match="IMAGESCORE.VGG.WIDTH_DIVISOR"):
        build_backbone(cfg)


# ---------------------------------------------------------------- weight conversion


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A random torchvision VGG16, converted by the tool and loaded into the full Base-VGG16 detector."""
    torch.manual_seed(0)
    vgg = torchvision.models.vgg16().eval()
    directory = tmp_path_factory.mktemp("vgg16")
    pth, pkl = str(directory / "vgg16.pth"), str(directory / "vgg16_d2.pkl")
    torch.save(vgg.state_dict(), pth)
    tool = runpy.run_path(os.path.join(REPO, "tools", "convert_vgg16_weights.py"))
    tool["main"]([pth, pkl])
    model = build_model(project_cfg("Base-VGG16.yaml")).eval()
    DetectionCheckpointer(model).load(pkl)
    return vgg, model, tool, pkl


def test_converted_weights_equal_torchvision(converted):
    vgg, model, _, _ = converted
    torchvision_params = vgg.state_dict()
    detectron2_params = model.state_dict()
    for tv_key, (d2_key, _) in vgg16_key_map().items():
        prefix = "roi_heads." if d2_key.startswith("box_head") else "backbone.body."
        assert torch.equal(detectron2_params[prefix + d2_key], torchvision_params[tv_key]), tv_key
    assert len(vgg16_key_map()) == 2 * 13 + 4


def test_converted_backbone_computes_torchvision_features(converted):
    vgg, model, _, _ = converted
    x = torch.randn(1, 3, 80, 112)
    with torch.no_grad():
        ours = model.backbone(x)["vgg_conv5"]
        theirs = vgg.features[:30](x)  # up to conv5_3's ReLU, without pool5
    assert ours.shape == (1, 512, 5, 7)
    assert torch.equal(ours, theirs)


def test_converted_weights_load_without_the_wrapper(converted):
    vgg, _, _, pkl = converted
    backbone = VGG16Backbone()
    DetectionCheckpointer(backbone).load(pkl)
    assert torch.equal(backbone.conv3_2.weight, vgg.features[12].weight)


def test_vgg16_config_normalises_like_torchvision(converted):
    _, model, _, _ = converted
    transform = torchvision.models.VGG16_Weights.IMAGENET1K_V1.transforms()
    image = torch.rand(3, 32, 32)  # RGB in [0, 1], as torchvision sees it
    ours = model.preprocess_image([{"image": image * 255}]).tensor[0]
    theirs = torchvision.transforms.functional.normalize(image, transform.mean, transform.std)
    torch.testing.assert_close(ours, theirs)
    assert project_cfg("Base-VGG16.yaml").INPUT.FORMAT == "RGB"


def test_converter_names_the_file_that_lacks_keys(converted, tmp_path, capsys):
    _, _, tool, _ = converted
    partial = str(tmp_path / "partial.pth")
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, partial)
    with pytest.raises(ValueError, match="partial.pth.*missing.*features.0.bias"):
        tool["main"]([partial, str(tmp_path / "out.pkl")])
    assert not os.path.exists(tmp_path / "out.pkl")
    with pytest.raises(SystemExit) as exit_info:
        tool["main"](["--help"])
    assert exit_info.value.code == 0
    assert 'INPUT.FORMAT "RGB"' in capsys.readouterr().out


def test_converter_rejects_wrong_shapes(converted):
    vgg, _, _, _ = converted
    state_dict = dict(vgg.state_dict())
    state_dict["classifier.0.weight"] = torch.zeros(4096, 100)
    with pytest.raises(ValueError, match="my.pth: classifier.0.weight has shape"):
        convert_vgg16_state_dict(state_dict, source="my.pth")


# ---------------------------------------------------------------- recording wrapper

WRAPPED = {
    "vgg16": (slim_vgg_cfg, VGG_LAYERS),
    "r50_c4": (lambda: project_cfg("Base-R50-C4.yaml"), C4_LAYERS),
    "r50_fpn": (lambda: detectron2_voc_cfg("faster_rcnn_R_50_FPN.yaml"), FPN_LAYERS),
}


@pytest.mark.parametrize("kind", sorted(WRAPPED))
def test_wrapper_forwards_like_its_backbone_and_records_per_image(kind):
    make_cfg, layers = WRAPPED[kind]
    cfg = make_cfg()
    torch.manual_seed(0)
    wrapper = build_backbone(cfg).eval()
    plain = BACKBONE_REGISTRY.get(cfg.IMAGESCORE.WRAPPED_BACKBONE)(
        cfg, ShapeSpec(channels=3)
    ).eval()
    plain.load_state_dict(wrapper.body.state_dict())
    assert isinstance(wrapper, RecordingBackbone) and type(wrapper.body) is type(plain)
    assert wrapper.output_shape() == plain.output_shape()
    assert wrapper.size_divisibility == plain.size_divisibility
    assert wrapper.padding_constraints == plain.padding_constraints
    assert wrapper.layers == layers

    batch = torch.zeros(2, 3, 96, 128)
    batch[0] = torch.randn(3, 96, 128)
    batch[1, :, :64, :96] = torch.randn(3, 64, 96)
    assert hook_count(wrapper) == 0
    recorder = wrapper.recorder(grid=2)
    recorder.set_image_sizes([(96, 128), (64, 96)])
    with torch.no_grad(), recorder:
        assert hook_count(wrapper) == len(layers) + 1  # the layers and the input-size hook
        features = wrapper(batch)
    assert hook_count(wrapper) == 0
    with torch.no_grad():
        expected = plain(batch)
    assert features.keys() == expected.keys()
    for name in expected:
        assert torch.equal(features[name], expected[name]), name
    acts = recorder.pop()
    assert list(acts) == layers
    assert all(act.shape[0] == 2 and act.shape[-2:] == (2, 2) for act in acts.values())


def test_wrapper_records_the_layers_the_config_names():
    cfg = project_cfg("Base-R50-C4.yaml", "IMAGESCORE.LAYERS", ["res3.3", "stem"])
    assert build_backbone(cfg).layers == ["res3.3", "stem"]
    cfg.IMAGESCORE.LAYERS = ["res3.9"]
    with pytest.raises(ValueError, match="IMAGESCORE.LAYERS.*res3.9"):
        build_backbone(cfg)


@pytest.mark.parametrize("name", ["build_imagescore_backbone", "build_no_such_backbone"])
def test_wrapped_backbone_must_be_another_registered_builder(name):
    cfg = slim_vgg_cfg()
    cfg.IMAGESCORE.WRAPPED_BACKBONE = name
    with pytest.raises(ValueError, match="IMAGESCORE.WRAPPED_BACKBONE.*build_resnet_backbone"):
        build_backbone(cfg)


def test_unknown_backbones_need_configured_layers():
    class OneConvBackbone(Backbone):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return {"out": self.conv(x)}

    with pytest.raises(ValueError, match="OneConvBackbone.*IMAGESCORE.LAYERS"):
        default_recorded_layers(OneConvBackbone())
    assert RecordingBackbone(OneConvBackbone(), ["conv"]).recorder(grid=1).layers == ["conv"]


# ---------------------------------------------------------------- Detectron2's own configs


@pytest.mark.parametrize(
    "filename,layers",
    [("faster_rcnn_R_50_C4.yaml", C4_LAYERS), ("faster_rcnn_R_50_FPN.yaml", FPN_LAYERS)],
)
def test_detectron2_voc_config_runs_inside_the_wrapper(filename, layers):
    cfg = detectron2_voc_cfg(filename)
    model = build_model(cfg).eval()
    sizes = [(96, 128), (80, 112)]
    batched_inputs = [{"image": torch.rand(3, h, w) * 255} for h, w in sizes]
    recorder = model.backbone.recorder(cfg.IMAGESCORE.GRID)
    recorder.set_image_sizes([tuple(x["image"].shape[-2:]) for x in batched_inputs])
    with torch.inference_mode(), recorder:
        outputs = model(batched_inputs)
    acts = recorder.pop()
    assert [output["instances"].image_size for output in outputs] == sizes
    assert list(acts) == layers
    grid = cfg.IMAGESCORE.GRID
    assert all(act.shape[0] == 2 and act.shape[-2:] == (grid, grid) for act in acts.values())
    assert hook_count(model) == 0
