"""Bring your own data (issue 11): sets declared in the config, a COCO-format labelled set, an image
folder as the unlabelled set, bad files, and the evaluator chosen by each test set's evaluator_type.

The data: a tiny synthetic VOC-format set, a COCO-format copy of its labelled and test splits (with
category ids 10..50, not 1..K, so that "pseudo labels keep the labelled set's ids" can fail), and a
folder mixing synthetic JPEGs with scikit-image's bundled photos (one of them grayscale).
"""

import csv
import json
import logging
import os
import shutil

import pytest

pytest.importorskip("detectron2")
pytestmark = pytest.mark.detectron2

import skimage.data  # noqa: E402
import torch  # noqa: E402
from detectron2.data import DatasetCatalog  # noqa: E402
from detectron2.data.datasets import register_coco_instances  # noqa: E402
from detectron2.evaluation import COCOEvaluator  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402
from helpers import (  # noqa: E402
    DEMO_CONFIG,
    TINY_OPTS,
    TOOLS,
    load_tool,
    schedule,
    spawn_with_this_process_threads,
)
from PIL import Image  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402

from imagescore_det import build_config  # noqa: E402
from imagescore_det.data.convert import voc_split_to_coco  # noqa: E402
from imagescore_det.data.registry import parse_dataset_entry, register_config_datasets  # noqa: E402
from imagescore_det.data.synthetic import SYNTHETIC_CLASSES, generate_synthetic_voc  # noqa: E402
from imagescore_det.evaluation.evaluators import (  # noqa: E402
    NoDetectionsCOCOEvaluator,
    VOCAndCOCOStyleEvaluator,
    build_evaluator,
)

CONFIG = DEMO_CONFIG
train_net = load_tool("train_net")
score_voc = load_tool("score_voc")


def parse_score_voc(argv):
    return score_voc.argument_parser().parse_args(argv)


CATEGORY_IDS = [10, 20, 30, 40, 50]
PHOTOS = {
    "astronaut.jpg": skimage.data.astronaut,
    "coffee.jpg": skimage.data.coffee,
    "chelsea.png": skimage.data.chelsea,
    "camera.png": skimage.data.camera,
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("own_data")
    generate_synthetic_voc(str(root / "voc"), num_labelled=6, num_unlabelled=6, num_test=4)
    voc2007 = str(root / "voc" / "VOC2007")
    for split, json_file in (("trainval", "labelled.json"), ("test", "test.json")):
        with open(root / json_file, "w") as f:
            json.dump(voc_split_to_coco(voc2007, split, SYNTHETIC_CLASSES, CATEGORY_IDS), f)
    photos = root / "photos"
    shutil.copytree(root / "voc" / "VOC2012" / "JPEGImages", photos / "synthetic")
    (photos / "skimage").mkdir()
    for name, load in PHOTOS.items():
        image = Image.fromarray(load())
        image.thumbnail((160, 160))  # small, to keep the test fast
        image.save(photos / "skimage" / name)
    return root


def entries(root, photos="photos"):
    images = os.path.join(root, "voc", "VOC2007", "JPEGImages")
    return [
        "own_labelled=coco:%s:%s" % (os.path.join(root, "labelled.json"), images),
        "own_test=coco:%s:%s" % (os.path.join(root, "test.json"), images),
        "own_voc_test=voc:%s:test:%s"
        % (os.path.join(root, "voc", "VOC2007"), ",".join(SYNTHETIC_CLASSES)),
        "own_photos=folder:%s" % os.path.join(root, photos),
    ]


def own_opts(root, photos="photos", test="own_test"):
    return TINY_OPTS + [
        "IMAGESCORE.REGISTER_DATASETS",
        repr(entries(root, photos)),
        "DATASETS.TRAIN",
        "('own_labelled',)",
        "IMAGESCORE.LABELLED_DATASETS",
        "('own_labelled',)",
        "IMAGESCORE.UNLABELLED_DATASETS",
        "('own_photos',)",
        "DATASETS.TEST",
        "(%r,)" % test,
    ]


@pytest.fixture(scope="module")
def own_run(data, tmp_path_factory):
    """tools/train_net.py on the COCO-format labelled set and the photo folder: 4 iterations, swap at 2."""
    output_dir = str(tmp_path_factory.mktemp("own_run"))
    opts = own_opts(data) + schedule(4, swap_iter=2) + ["OUTPUT_DIR", output_dir]
    train_net.main(train_net.default_argument_parser().parse_args(["--config-file", CONFIG, *opts]))
    return output_dir


def test_coco_labelled_set_and_photo_folder_run_the_whole_path(own_run):
    with open(os.path.join(own_run, "log.txt")) as f:
        log = f.read()
    assert (
        "Registered coco dataset 'own_labelled'" in log
        and "Checked dataset 'own_photos': 10 images" in log
    )
    assert "Scored 10 images of own_photos" in log and "Kept 3 of 10 scored images" in log
    assert "AP50 on own_test at the end (iteration 4): " in log and "(COCO protocol)" in log

    json_file = os.path.join(own_run, "pseudo_labels.json")
    payload = COCO(json_file).dataset
    assert [(c["id"], c["name"]) for c in payload["categories"]] == list(
        zip(CATEGORY_IDS, SYNTHETIC_CLASSES)
    )
    assert payload["annotations"] and {a["category_id"] for a in payload["annotations"]} <= set(
        CATEGORY_IDS
    )
    register_coco_instances("own_pseudo_check", {}, json_file, payload["info"]["image_root"])
    loaded = DatasetCatalog.get("own_pseudo_check")
    assert len(loaded) == len(payload["images"]) > 0 and all(
        os.path.isfile(d["file_name"]) for d in loaded
    )
    with open(os.path.join(own_run, "image_scores.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    ids = {row["image_id"] for row in rows}
    assert (
        {"skimage/" + name for name in PHOTOS} <= ids
        and "synthetic/2012_000001.jpg" in ids
        and len(rows) == 10
    )
    assert all(row["scored"] == "1" and float(row["score"]) <= 0 for row in rows)


@pytest.fixture(scope="module")
def bad_folder(data):
    """The photo folder plus a truncated JPEG and a text file named .png."""
    bad = data / "bad_photos"
    shutil.copytree(data / "photos", bad)
    with open(data / "photos" / "synthetic" / "2012_000002.jpg", "rb") as f:
        (bad / "synthetic" / "truncated.jpg").write_bytes(f.read()[:1500])
    (bad / "skimage" / "notes.png").write_text("these are my notes, not a picture\n")
    return bad


def score_folder_argv(data, own_run, output_dir, *extra):
    return [
        "--config-file",
        CONFIG,
        "--weights",
        os.path.join(own_run, "model_final.pth"),
        "--output-dir",
        str(output_dir),
        *extra,
        *own_opts(data, "bad_photos"),
    ]


@pytest.fixture(scope="module")
def bad_folder_scored(data, own_run, bad_folder, tmp_path_factory):
    """tools/score_voc.py (one process) on the folder with the two bad files; its warnings captured."""
    output_dir = tmp_path_factory.mktemp("bad_folder_scored")
    handler = CapturingHandler()
    logger = logging.getLogger(
        "imagescore_det"
    )  # Detectron2's setup_logger stops propagation to pytest's root handler
    logger.addHandler(handler)
    try:
        result = score_voc.main(parse_score_voc(score_folder_argv(data, own_run, output_dir)))
    finally:
        logger.removeHandler(handler)
    return output_dir, result, handler.messages


class CapturingHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_unreadable_images_are_skipped_named_and_listed_as_not_scored(
    bad_folder, bad_folder_scored
):
    output_dir, result, warnings = bad_folder_scored
    bad_files = [
        str(bad_folder / "skimage" / "notes.png"),
        str(bad_folder / "synthetic" / "truncated.jpg"),
    ]
    for path in bad_files:
        assert any(
            message.startswith("Skipping %s: it cannot be read as an image" % path)
            for message in warnings
        )
    with open(output_dir / "image_scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(row["file_name"] for row in rows if row["scored"] == "0") == bad_files
    assert all(row["error"] and row["score"] == "" for row in rows if row["scored"] == "0")
    assert (
        sum(row["scored"] == "1" and float(row["score"]) <= 0 for row in rows) == 10
    )  # every other image
    assert (
        sorted(COCO(str(output_dir / "pseudo_labels.json")).dataset["info"]["unreadable_images"])
        == bad_files
    )
    # No ground truth in a folder: the files are written, the strategy comparison is not.
    assert (
        result["table"] is None
        and result["written"]["num_selected"] == 3
        and result["written"]["num_unreadable"] == 2
    )
    for name in ("imagescore_reference.pt", "image_scores_histogram.png"):
        assert os.path.getsize(output_dir / name) > 0


def test_two_processes_score_a_folder_like_one(
    data, own_run, bad_folder_scored, tmp_path, monkeypatch, capfd
):
    """The folder (bad files included) scored by two processes (gloo on CPU): the same CSV, bit for bit."""
    one = bad_folder_scored[0]
    spawn_with_this_process_threads(monkeypatch)
    monkeypatch.syspath_prepend(TOOLS)  # the spawned ranks import the tool by name
    score_voc.invoke_main(
        score_folder_argv(
            data,
            own_run,
            tmp_path,
            "--num-gpus",
            "2",
            "--dist-url",
            "file://" + str(tmp_path / "rdv"),
        )
    )
    assert "precision and recall of the pseudo labels need ground truth" in capfd.readouterr().out
    with open(one / "image_scores.csv") as a, open(tmp_path / "image_scores.csv") as b:
        assert a.read() == b.read()


def perfect_predictions(evaluator, dataset_name):
    """Feed the ground truth back as detections of confidence 1, the way inference_on_dataset would."""
    evaluator.reset()
    for record in DatasetCatalog.get(dataset_name):
        instances = Instances((record["height"], record["width"]))
        boxes = [a["bbox"] for a in record["annotations"]]
        if (
            record["annotations"]
            and "bbox_mode" in record["annotations"][0]
            and record["annotations"][0]["bbox_mode"] == 1
        ):
            boxes = [[x, y, x + w, y + h] for x, y, w, h in boxes]  # XYWH_ABS (COCO) -> XYXY_ABS
        instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        instances.scores = torch.ones(len(boxes))
        instances.pred_classes = torch.tensor(
            [a["category_id"] for a in record["annotations"]], dtype=torch.int64
        )
        evaluator.process([record], [{"instances": instances}])
    return evaluator.evaluate()


def test_evaluator_follows_evaluator_type_and_voc_sets_report_both_protocols(
    data, tmp_path, caplog
):
    cfg = build_config(CONFIG, own_opts(data, test="own_voc_test") + ["OUTPUT_DIR", str(tmp_path)])
    register_config_datasets(cfg)
    coco = build_evaluator(cfg, "own_test")  # Detectron2's, with AP 0 where nothing is detected
    assert type(coco) is NoDetectionsCOCOEvaluator and isinstance(coco, COCOEvaluator)
    voc = build_evaluator(cfg, "own_voc_test")
    assert isinstance(voc, VOCAndCOCOStyleEvaluator)
    with pytest.raises(ValueError, match="'own_photos' has evaluator_type 'folder'"):
        build_evaluator(cfg, "own_photos")

    logger = logging.getLogger("imagescore_det")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="imagescore_det")
    try:
        results = perfect_predictions(voc, "own_voc_test")
    finally:
        logger.removeHandler(caplog.handler)
    # Detectron2's VOC evaluator averages over every class, giving a class without test objects AP 0;
    # pycocotools leaves such classes out. Perfect detections therefore score:
    present = {
        a["category_id"]
        for record in DatasetCatalog.get("own_voc_test")
        for a in record["annotations"]
    }
    assert (
        0 < len(present) < len(SYNTHETIC_CLASSES)
    )  # the 4 test images miss a class: the protocols differ
    assert results["bbox"]["AP50"] == pytest.approx(100.0 * len(present) / len(SYNTHETIC_CLASSES))
    assert results["bbox_coco"]["AP50"] == pytest.approx(100.0)
    assert (
        results["bbox_coco"]["AP"] == pytest.approx(100.0)
        and "APs" in results["bbox_coco"]
        and "APs" not in results["bbox"]
    )
    assert any(
        "by the Pascal VOC protocol (11-point VOC2007 metric; bbox/AP50)" in r.getMessage()
        for r in caplog.records
    )
    # The COCO-format copy (category ids 10..50) through Detectron2's COCOEvaluator.
    assert perfect_predictions(build_evaluator(cfg, "own_test"), "own_test")["bbox"][
        "AP50"
    ] == pytest.approx(100.0)


def test_malformed_entries_and_bad_files_fail_clearly_naming_them(data, tmp_path):
    for entry, problem in [
        ("photos", "expected NAME=KIND"),
        ("a=coco:only.json", "wrong number"),
        ("a=tsv:x", "unknown kind 'tsv'"),
        ("a=folder:", "a field is empty"),
        ("a=voc:dir", "wrong number"),
        ("a=voc:dir:test:cat,,dog", "the class list"),
    ]:
        with pytest.raises(ValueError) as error:
            parse_dataset_entry(entry)
        assert "entry %r: %s" % (entry, problem) in str(error.value) and "NAME=folder:DIR" in str(
            error.value
        )
    assert parse_dataset_entry("v=voc:d:test").class_names[:2] == ("aeroplane", "bicycle")

    def register(*extra, test="own_test"):
        cfg = build_config(CONFIG, own_opts(data, test=test) + list(extra))
        register_config_datasets(cfg)

    not_json, no_categories = tmp_path / "not.json", tmp_path / "partial.json"
    not_json.write_text("{'images': []")
    no_categories.write_text(json.dumps({"images": [], "annotations": []}))
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.txt").write_text("no images here")
    broken = [
        (
            "IMAGESCORE.REGISTER_DATASETS",
            ["x=coco:%s:%s" % (not_json, tmp_path)],
            "%s is not valid JSON" % not_json,
        ),
        (
            "IMAGESCORE.REGISTER_DATASETS",
            ["x=coco:%s:%s" % (no_categories, tmp_path)],
            "%s lacks the list\\(s\\) categories" % no_categories,
        ),
    ]
    for key, value, message in broken:
        with pytest.raises(ValueError, match=message):
            register(key, repr(value))
    # The tool stops before it writes anything: no half-written output.
    output_dir = tmp_path / "not_written"
    argv = ["--config-file", CONFIG, "--output-dir", str(output_dir), *own_opts(data)]
    argv[argv.index("IMAGESCORE.REGISTER_DATASETS") + 1] = repr(
        entries(data)[:-1] + ["own_photos=folder:%s" % empty]
    )
    with pytest.raises(ValueError, match="image folder %s holds no image" % empty):
        score_voc.main(parse_score_voc(argv))
    assert not output_dir.exists()
    missing_image = tmp_path / "missing_image.json"
    with open(data / "test.json") as f:
        payload = json.load(f)
    payload["images"][1]["file_name"] = "gone.jpg"
    missing_image.write_text(json.dumps(payload))
    with pytest.raises(FileNotFoundError, match="%s names 1 image file.*gone.jpg" % missing_image):
        register(
            "IMAGESCORE.REGISTER_DATASETS",
            repr(
                entries(data)
                + ["gone=coco:%s:%s" % (missing_image, data / "voc" / "VOC2007" / "JPEGImages")]
            ),
            test="gone",
        )
    with pytest.raises(
        ValueError, match="test dataset 'own_voc_default' has classes \\['aeroplane'"
    ):
        register(
            "IMAGESCORE.REGISTER_DATASETS",
            repr(entries(data) + ["own_voc_default=voc:%s:test" % (data / "voc" / "VOC2007")]),
            test="own_voc_default",
        )

    with pytest.raises(
        ValueError,
        match="test dataset 'own_photos' has no class list: an image folder can only be unlabelled",
    ):
        register(test="own_photos")

    voc = tmp_path / "VOC_broken"
    shutil.copytree(data / "voc" / "VOC2007", voc)
    xml_file = voc / "Annotations" / "2007_500001.xml"  # the first test image
    xml_file.write_text(xml_file.read_text().replace("<name>", "<name>purple_", 1))
    with pytest.raises(ValueError, match="%s names class 'purple_" % xml_file):
        register(
            "IMAGESCORE.REGISTER_DATASETS",
            repr(entries(data) + ["bad_voc=voc:%s:test:%s" % (voc, ",".join(SYNTHETIC_CLASSES))]),
            test="bad_voc",
        )
    os.remove(
        voc / "JPEGImages" / "2007_000002.jpg"
    )  # a labelled (trainval) image, here used as the unlabelled set
    with pytest.raises(
        FileNotFoundError,
        match="trainval.txt names 1 image file.* %s" % (voc / "JPEGImages" / "2007_000002.jpg"),
    ):
        register(
            "IMAGESCORE.REGISTER_DATASETS",
            repr(
                entries(data) + ["bad_voc=voc:%s:trainval:%s" % (voc, ",".join(SYNTHETIC_CLASSES))]
            ),
            "IMAGESCORE.UNLABELLED_DATASETS",
            "('bad_voc',)",
        )
