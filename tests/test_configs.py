"""Every Detectron2 YAML under configs/ loads with the project's keys and builds a model (Detectron2's plugin convention)."""

import glob
import os

import pytest
import torch

pytest.importorskip("detectron2")

from detectron2.config import get_cfg  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402

from imagescore_det import add_imagescore_config  # noqa: E402
from imagescore_det.modeling import RecordingBackbone  # noqa: E402

pytestmark = pytest.mark.detectron2

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
#: configs/classification/ holds the classification mode's own configs, which Detectron2 never reads.
CONFIG_FILES = sorted(
    path
    for path in glob.glob(os.path.join(CONFIG_DIR, "**", "*.yaml"), recursive=True)
    if os.path.relpath(path, CONFIG_DIR).split(os.sep)[0] != "classification"
)


def test_configs_exist():
    assert {"Base-VGG16.yaml", "Base-R50-C4.yaml"} <= {
        os.path.basename(path) for path in CONFIG_FILES
    }


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda path: os.path.relpath(path, CONFIG_DIR))
def test_config_loads_and_builds_a_model(path):
    with open(path) as f:
        assert f.readline().startswith("#"), (
            "%s should start with a comment saying what it is" % path
        )
    cfg = get_cfg()
    add_imagescore_config(cfg)
    cfg.merge_from_file(path)  # unknown keys or wrong types raise here
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    model = build_model(cfg)  # needs no dataset, so none has to be registered
    assert sum(p.numel() for p in model.parameters()) > 0
    if cfg.MODEL.BACKBONE.NAME == "build_imagescore_backbone":
        assert isinstance(model.backbone, RecordingBackbone) and model.backbone.layers
    model.eval()
    with torch.inference_mode():
        (output,) = model([{"image": torch.rand(3, 64, 96) * 255}])
    assert output["instances"].image_size == (64, 96)
