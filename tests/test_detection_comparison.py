"""tools/compare_detections.py: models side by side on test images spread over the set."""

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("detectron2")
pytestmark = pytest.mark.detectron2

from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.data import DatasetCatalog  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from helpers import DEMO_CONFIG, TINY_OPTS, load_tool  # noqa: E402

from imagescore_det.config import build_config  # noqa: E402
from imagescore_det.data.ground_truth import ground_truth_of  # noqa: E402
from imagescore_det.evaluation.detection_comparison import (  # noqa: E402
    _caption,
    draw_detection_comparison,
)
from imagescore_det.evaluation.selection_gallery import CAPTION_HEIGHT, PANEL_SIDE  # noqa: E402
from imagescore_det.structures import ScoredImage  # noqa: E402

compare_detections = load_tool("compare_detections")


def test_two_models_side_by_side_on_images_spread_over_the_set(data_root, tmp_path):
    model = build_model(build_config(DEMO_CONFIG, TINY_OPTS + ["MODEL.DEVICE", "cpu"]))
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("random")
    weights = str(tmp_path / "random.pth")
    out = tmp_path / "compare.png"
    args = compare_detections.argument_parser().parse_args(
        [
            "--config-file",
            DEMO_CONFIG,
            "--weights",
            "a=" + weights,
            "b=" + weights,
            "--images",
            "2",
            "--score-thresh",
            "0.0",
            "--output",
            str(out),
            *TINY_OPTS,
        ]  # fmt: skip
    )
    grid = compare_detections.main(args)
    assert (grid["rows"], grid["columns"]) == (2, 3)  # ground truth, a, b
    with Image.open(out) as png:
        assert png.size == (3 * PANEL_SIDE, 2 * (PANEL_SIDE + CAPTION_HEIGHT))
    with pytest.raises(ValueError, match="distinct LABEL=FILE"):
        compare_detections.parse_weights(["a=x", "a=y"])
    assert compare_detections.evenly_spaced(list(range(10)), 3) == [0, 4, 9]  # 0, 4.5, 9 rounded
    assert compare_detections.evenly_spaced(list(range(2)), 5) == [0, 1]


def test_captions_count_right_detections_and_rows_must_show_one_image(data_root, tmp_path):
    record = DatasetCatalog.get("synthetic_voc_2007_test")[0]
    truth = ground_truth_of(["synthetic_voc_2007_test"])
    boxes, classes = truth[record["image_id"]][:2]
    assert len(classes) > 0

    def image(boxes, classes, image_id=record["image_id"]):
        return ScoredImage(image_id, record["file_name"], record["height"], record["width"],
                           np.asarray(boxes).tolist(), [int(c) for c in classes], [0.9] * len(classes))  # fmt: skip

    exact = image(boxes, classes)
    shifted = image(np.asarray(boxes) + 1000, classes)  # off the image: no match
    n = len(classes)
    assert _caption("a", exact, truth) == "a: %d found, %d right / %d" % (n, n, n)
    assert _caption("b", shifted, truth) == "b: %d found, 0 right / %d" % (n, n)
    other = image([], [], image_id="another image")
    with pytest.raises(ValueError, match="does not show the same image"):
        draw_detection_comparison(
            [{"a": exact, "b": other}], truth, ["x"] * 5, str(tmp_path / "x.png")
        )
