"""IMAGESCORE.SCORE_BATCH_SIZE: batched reference and scoring passes score as one image per batch.

Where the images of a batch have one size there is no padding, and the property is exact: in
float64 through the engine's own passes (references, scores, terms, detections), and in float32 end
to end through tools/score_voc.py (identical image_scores.csv at batch 1 and 4). Images of mixed
sizes are padded to the batch's largest; the recorder crops each activation to its image, but a
biased stride-1 backbone such as VGG16 carries the padding into the image's last rows and columns,
and Detectron2's own detections change there too, so those scores do depend on the batch
(docs/performance.md, "Batches and shards"); SCORE_BATCH_SIZE is therefore part of the shards'
fingerprint.
"""

import csv
import os
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch

pytest.importorskip("detectron2")
pytestmark = pytest.mark.detectron2

from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from helpers import DEMO_CONFIG, TINY_DATA, TINY_OPTS, load_tool  # noqa: E402
from PIL import Image  # noqa: E402

from imagescore_det import build_config  # noqa: E402
from imagescore_det.data.registry import register_config_datasets  # noqa: E402
from imagescore_det.data.synthetic import SYNTHETIC_CLASSES, generate_synthetic_voc  # noqa: E402
from imagescore_det.data.voc import register_synthetic_voc, synthetic_root  # noqa: E402
from imagescore_det.detection.modes import (  # noqa: E402
    ImageMode,
    build_references,
    score_images,
)
from imagescore_det.detection.passes import (  # noqa: E402
    labelled_loader,
    records_loader,
    unlabelled_records,
)

CONFIG = DEMO_CONFIG
DATA = TINY_DATA
SIZE = (192, 144)  # every image of the same-size copies, width x height
OPTS = TINY_OPTS


def same_size_copy(source: str, target: str) -> None:
    """A VOC-layout folder with every image resized to SIZE and its boxes scaled alike."""
    shutil.copytree(source, target)
    for name in os.listdir(os.path.join(target, "JPEGImages")):
        path = os.path.join(target, "JPEGImages", name)
        image = Image.open(path).convert("RGB")
        scale = (SIZE[0] / image.width, SIZE[1] / image.height)
        image.resize(SIZE, Image.BILINEAR).save(path, quality=95)
        xml = os.path.join(target, "Annotations", os.path.splitext(name)[0] + ".xml")
        tree = ET.parse(xml)
        tree.find("size/width").text, tree.find("size/height").text = map(str, SIZE)
        for box in tree.iter("bndbox"):
            for tag, axis in (("xmin", 0), ("xmax", 0), ("ymin", 1), ("ymax", 1)):
                node = box.find(tag)
                value = round(float(node.text) * scale[axis])
                node.text = str(min(SIZE[axis], max(1, value)))
        tree.write(xml)


@pytest.fixture(scope="module")
def same_size_opts(tmp_path_factory):
    """Config overrides naming same-size copies of the tiny set's labelled and unlabelled splits."""
    root = str(tmp_path_factory.mktemp("datasets"))
    generate_synthetic_voc(synthetic_root(root, DATA), **DATA)
    classes = ",".join(SYNTHETIC_CLASSES)
    entries = []
    for name, year in (("same_labelled", "2007"), ("same_unlabelled", "2012")):
        target = os.path.join(root, "same", "VOC" + year)
        same_size_copy(os.path.join(synthetic_root(root, DATA), "VOC" + year), target)
        entries.append("%s=voc:%s:trainval:%s" % (name, target, classes))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DETECTRON2_DATASETS", root)
        yield OPTS + [
            "IMAGESCORE.REGISTER_DATASETS", str(tuple(entries)),
            "IMAGESCORE.LABELLED_DATASETS", "('same_labelled',)",
            "IMAGESCORE.UNLABELLED_DATASETS", "('same_unlabelled',)",
        ]  # fmt: skip
    register_synthetic_voc(synthetic_root())


def config(opts, batch_size):
    cfg = build_config(CONFIG, opts + ["IMAGESCORE.SCORE_BATCH_SIZE", str(batch_size)])
    register_config_datasets(cfg)
    return cfg


def test_float64_passes_give_the_same_references_scores_and_detections_at_any_batch_size(
    same_size_opts,
):
    """The engine's own passes (reference and scoring) with the backbone, whose activations are
    recorded, in float64, where batched and single convolutions agree to ~1e-15, so no unit can
    cross its threshold between the two; the heads stay float32 (Detectron2 decodes boxes in
    float32), fed the backbone's features rounded to float32."""
    torch.manual_seed(0)
    model = build_model(config(same_size_opts, 1)).eval()
    model.backbone.double()
    model.backbone.register_forward_pre_hook(lambda module, args: (args[0].double(),))
    model.backbone.register_forward_hook(
        lambda module, args, output: {name: value.float() for name, value in output.items()}
    )
    results = {}
    for batch_size in (1, 4):
        cfg = config(same_size_opts, batch_size)
        scorers = [ImageMode(cfg, model, "float64")]
        references = build_references(model, labelled_loader(cfg), scorers)
        images = score_images(
            model,
            records_loader(cfg, unlabelled_records(cfg)),
            scorers,
            references,
            pseudo_score_thresh=0.0,
            ignore_score_thresh=1.0,
        )
        results[batch_size] = (references["image"], images)
    (reference_1, images_1), (reference_4, images_4) = results[1], results[4]
    # Sums over batches of 4 and of 1 round differently (~1e-16): equal means to float64 rounding,
    # and (below) the same scores, which only the same masks and thresholds give.
    for layer, mean in reference_1.mean.items():
        assert torch.allclose(mean, reference_4.mean[layer], rtol=1e-12, atol=0), layer
    assert len(images_1) == 10 and len({image.image_score for image in images_1}) > 1
    assert all(image.boxes for image in images_1)
    # The image score comes from the float64 backbone alone: the same to the bit.
    assert [(i.image_id, i.image_score, i.terms) for i in images_1] == [
        (i.image_id, i.image_score, i.terms) for i in images_4
    ]
    # The float32 heads see one image or four at a time; with a multi-threaded BLAS their products
    # may round differently in the last bits, so detections agree to float32 precision.
    for one, four in zip(images_1, images_4):
        assert one.classes == four.classes
        assert np.allclose(one.boxes, four.boxes, rtol=1e-5, atol=1e-3)
        assert np.allclose(one.confidences, four.confidences, rtol=1e-5, atol=1e-6)


def test_score_voc_writes_the_same_csv_at_batch_1_and_4(same_size_opts, tmp_path):
    """float32, end to end, both modes (the set has ground truth): the same scores, per-layer terms,
    ranks, selection and pseudo-label counts. Only the mean confidence may differ, in its last float32
    bits (measured: 1 ulp, ~1.5e-8, in 2 of 10 images of this untrained model): the box head's
    matrix products run over the ROIs of 1 or 4 images, blocked differently."""
    score_voc = load_tool("score_voc")
    torch.manual_seed(0)
    weights = DetectionCheckpointer(build_model(config(same_size_opts, 1)), save_dir=str(tmp_path))
    weights.save("model")
    outputs = {}
    for batch_size in (1, 4):
        out = tmp_path / ("batch%d" % batch_size)
        argv = ["--config-file", CONFIG, "--weights", str(tmp_path / "model.pth")]
        argv += ["--output-dir", str(out)] + same_size_opts
        argv += ["IMAGESCORE.SCORE_BATCH_SIZE", str(batch_size)]
        result = score_voc.main(score_voc.argument_parser().parse_args(argv))
        with open(out / "image_scores.csv") as f:
            outputs[batch_size] = (list(csv.DictReader(f)), result["table"][0])
    (rows_1, table_1), (rows_4, table_4) = outputs[1], outputs[4]
    assert table_1 == table_4 and table_1["strategy"] == "image_score"
    assert len(rows_1) == len(rows_4) == 10
    for row_1, row_4 in zip(rows_1, rows_4):
        confidence_1, confidence_4 = float(row_1.pop("confidence")), float(row_4.pop("confidence"))
        assert confidence_1 == pytest.approx(confidence_4, rel=1e-6, abs=0)
        assert row_1 == row_4
