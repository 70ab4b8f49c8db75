"""Pseudo-label JSON and CSV (docs/method.md §2 step 6) and the selection-quality measures, on hand-built data."""

import csv
import dataclasses
import json
import math

import numpy as np
import pytest

pytest.importorskip("detectron2")
pytestmark = pytest.mark.detectron2

from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.structures import BoxMode  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402

from imagescore_det.data.pseudo_labels import (  # noqa: E402
    build_pseudo_label_json,
    load_pseudo_labels,
    register_pseudo_labels,
    score_table,
    write_csv,
    write_json,
)
from imagescore_det.detection.selection import distractors_kept, select_by_strategy  # noqa: E402
from imagescore_det.evaluation.mode_comparison import markdown_table  # noqa: E402
from imagescore_det.evaluation.pseudo_label_quality import (  # noqa: E402
    compare_strategies,
    match_pseudo_labels,
    pseudo_label_file_quality,
    selection_quality,
)
from imagescore_det.structures import ScoredImage  # noqa: E402

CLASSES = ("cat", "dog", "bird")


def image(
    image_id, boxes=(), classes=(), scores=(), *, score=-1.0, confidence=0.5, folder="/data/a"
):
    """An image-mode record: its image score is what it ranks by."""
    return ScoredImage(
        image_id=image_id,
        file_name="%s/%s.jpg" % (folder, image_id),
        height=100,
        width=120,
        boxes=[list(b) for b in boxes],
        classes=list(classes),
        confidences=list(scores),
        mean_confidence=confidence,
        image_score=score,
        terms={"conv1": score / 2, "conv2": score / 2},
        ranking_value=score,
    )


def test_json_round_trip_through_pycocotools_and_detectron2(tmp_path):
    images = [
        image(
            "b",
            [(10, 20, 50, 60), (0, 0, 30, 40)],
            [2, 0],
            [0.9, 0.8],
            folder="/data/x/VOC2012/JPEGImages",
        ),
        image("a", [], [], [], folder="/data/y/JPEGImages"),  # dropped: no pseudo labels
        image("c", [(5, 5, 25, 35)], [1], [0.75], folder="/data/x/VOC2012/JPEGImages"),
    ]
    payload = build_pseudo_label_json(
        images, CLASSES, keep_empty=False, info={"select_fraction": 0.3}
    )
    assert payload["info"]["num_dropped_empty"] == 1 and payload["info"]["select_fraction"] == 0.3
    assert payload["info"]["image_root"] == "/data/x/VOC2012/JPEGImages"
    path = str(tmp_path / "pseudo.json")
    write_json(path, payload)

    coco = COCO(path)
    assert sorted(coco.getCatIds()) == [1, 2, 3]
    first = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert [a["bbox"] for a in first] == [[10.0, 20.0, 40.0, 40.0], [0.0, 0.0, 30.0, 40.0]]
    assert [a["category_id"] for a in first] == [3, 1] and first[0]["score"] == 0.9

    name = "test_pseudo_round_trip"
    assert register_pseudo_labels(name, path, CLASSES) == 2
    assert register_pseudo_labels(name, path, CLASSES) == 2  # re-registering replaces, no error
    dicts = DatasetCatalog.get(name)
    assert [d["file_name"] for d in dicts] == [
        "/data/x/VOC2012/JPEGImages/b.jpg",
        "/data/x/VOC2012/JPEGImages/c.jpg",
    ]
    boxes = [
        BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
        for a in dicts[0]["annotations"]
    ]
    assert np.allclose(boxes, [[10, 20, 50, 60], [0, 0, 30, 40]])
    assert [a["category_id"] for a in dicts[0]["annotations"]] == [
        2,
        0,
    ]  # contiguous ids = labelled order
    assert MetadataCatalog.get(name).thing_classes == list(CLASSES)
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def test_keep_empty_keeps_images_without_boxes():
    payload = build_pseudo_label_json(
        [image("a"), image("b", [(0, 0, 5, 5)], [0], [0.9])], CLASSES, keep_empty=True, info={}
    )
    assert len(payload["images"]) == 2 and len(payload["annotations"]) == 1


def test_bad_files_are_refused_by_name(tmp_path):
    other = build_pseudo_label_json(
        [image("a", [(0, 0, 5, 5)], [0], [0.9])], ("cat", "dog", "fish"), keep_empty=False, info={}
    )
    path = str(tmp_path / "other.json")
    write_json(path, other)
    with pytest.raises(ValueError, match="other.json has categories"):
        register_pseudo_labels("test_pseudo_bad", path, CLASSES)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="broken.json is not a pseudo-label file"):
        load_pseudo_labels(str(broken))
    with pytest.raises(ValueError, match="image 'a' has a detection of class 7"):
        build_pseudo_label_json(
            [image("a", [(0, 0, 5, 5)], [7], [0.9])], CLASSES, keep_empty=False, info={}
        )


def test_pseudo_labels_take_the_labelled_sets_own_category_ids(tmp_path):
    """A COCO-format labelled set with ids 10, 20, 30: the pseudo labels use them, and load onto the same classes."""
    images = [image("b", [(10, 20, 50, 60), (0, 0, 30, 40)], [2, 0], [0.9, 0.8])]
    payload = build_pseudo_label_json(
        images, CLASSES, keep_empty=False, info={}, category_ids=[10, 20, 30]
    )
    assert [(c["id"], c["name"]) for c in payload["categories"]] == [
        (10, "cat"),
        (20, "dog"),
        (30, "bird"),
    ]
    assert [a["category_id"] for a in payload["annotations"]] == [30, 10]
    path = str(tmp_path / "pseudo.json")
    write_json(path, payload)
    with pytest.raises(ValueError, match="categories"):
        register_pseudo_labels("imagescore_test_ids", path, CLASSES)  # 1..K expected: refused
    assert register_pseudo_labels("imagescore_test_ids", path, CLASSES, [10, 20, 30]) == 1
    (record,) = DatasetCatalog.get("imagescore_test_ids")
    assert [a["category_id"] for a in record["annotations"]] == [2, 0]  # contiguous ids: bird, cat
    with pytest.raises(ValueError, match="must rise"):
        build_pseudo_label_json(
            images, CLASSES, keep_empty=False, info={}, category_ids=[30, 20, 10]
        )
    DatasetCatalog.remove("imagescore_test_ids")
    MetadataCatalog.remove("imagescore_test_ids")


def test_csv_has_one_row_per_image_with_rank_selected_and_terms(tmp_path):
    images = [image("a", score=-2.0), image("b", [(0, 0, 5, 5)], [0], [0.9], score=-0.5)]
    unreadable = [
        ScoredImage.unreadable(
            "c", "/data/a/c.png", "UnidentifiedImageError: cannot identify image file"
        )
    ]
    header, rows = score_table(images, ranks=[2, 1], selected=[False, True], unreadable=unreadable)
    path = str(tmp_path / "scores.csv")
    write_csv(path, header, rows)
    with open(path, newline="") as f:
        read = list(csv.DictReader(f))
    assert list(read[0]) == [
        "image_id",
        "file_name",
        "score",
        "rank",
        "selected",
        "confidence",
        "num_pseudo_labels",
        "scored",
        "error",
        "term:conv1",
        "term:conv2",
    ]
    summary = [
        (r["image_id"], r["rank"], r["selected"], r["num_pseudo_labels"], r["scored"]) for r in read
    ]
    assert summary == [
        ("a", "2", "0", "0", "1"),
        ("b", "1", "1", "1", "1"),
        ("c", "", "0", "0", "0"),
    ]
    assert (
        read[2]["error"].startswith("UnidentifiedImageError")
        and read[2]["score"] == read[2]["term:conv1"] == ""
    )
    assert float(read[1]["term:conv1"]) + float(read[1]["term:conv2"]) == pytest.approx(
        float(read[1]["score"])
    )


def test_matching_needs_same_class_and_iou_and_claims_each_object_once():
    truth_boxes, truth_classes = np.array([[0, 0, 10, 10], [20, 20, 30, 30.0]]), np.array([0, 1])
    boxes = [[0, 0, 10, 10], [1, 0, 10, 10], [20, 20, 30, 30], [20, 20, 26, 30]]
    # second box duplicates the first object (lower score); third has the wrong class; fourth IoU 0.6, right class
    correct = match_pseudo_labels(
        boxes, [0, 0, 0, 1], [0.9, 0.8, 0.95, 0.7], truth_boxes, truth_classes
    )
    assert correct.tolist() == [True, False, False, True]
    assert match_pseudo_labels(
        [[20, 20, 24, 30]], [1], [0.9], truth_boxes, truth_classes
    ).tolist() == [False]  # IoU 0.4
    assert match_pseudo_labels([], [], [], truth_boxes, truth_classes).tolist() == []


def quality_fixture():
    truth = {
        "good": (np.array([[0, 0, 10, 10.0]]), np.array([0])),
        "half": (np.array([[0, 0, 10, 10], [50, 50, 60, 60.0]]), np.array([0, 1])),
        "empty": (np.array([[0, 0, 10, 10.0]]), np.array([2])),
        "wrong": (np.array([[0, 0, 10, 10.0]]), np.array([0])),
    }
    images = [
        image("good", [(0, 0, 10, 10)], [0], [0.9], score=-0.1, confidence=0.2),
        image(
            "half",
            [(0, 0, 10, 10), (80, 80, 90, 90)],
            [0, 1],
            [0.9, 0.8],
            score=-0.2,
            confidence=0.3,
        ),
        image("empty", score=-0.3, confidence=0.9),
        image("wrong", [(0, 0, 10, 10)], [1], [0.95], score=-0.4, confidence=0.95),
    ]
    return images, truth


def test_selection_quality_on_known_answers():
    images, truth = quality_fixture()
    everything = selection_quality(images, truth, np.arange(4))
    # 4 pseudo labels, 2 correct; 5 objects; 3 images have labels, 1 of them ("good") all correct.
    assert everything == {
        "images": 4,
        "empty": 1,
        "pseudo_labels": 4,
        "precision": 0.5,
        "recall": 0.4,
        "all_correct_share": 1 / 3,
    }
    best_two = selection_quality(images, truth, select_by_strategy(images, "image_score", 0.5))
    assert (best_two["precision"], best_two["recall"], best_two["all_correct_share"]) == (
        2 / 3,
        2 / 3,
        0.5,
    )
    confident = selection_quality(images, truth, select_by_strategy(images, "confidence", 0.5))
    assert (
        confident["empty"] == 1
        and confident["precision"] == 0.0
        and confident["all_correct_share"] == 0.0
    )
    assert math.isnan(
        selection_quality(images, truth, [2])["precision"]
    )  # no pseudo labels: undefined


def test_a_pseudo_label_file_reports_the_distractors_its_selection_kept():
    """The study's per-run record: the selection's own count of kept distractors (its info's
    ``kinds_kept``, every kept image counted) beside the precision of the file's pseudo labels."""
    images, truth = quality_fixture()
    kinds = ["clean", "novel", "photos", "clean"]
    images = [dataclasses.replace(scored, kind=kind) for scored, kind in zip(images, kinds)]
    kept = distractors_kept(images, [0, 1, 2])
    assert kept == {"distractors_kept": 2 / 3, "kept_novel": 1, "kept_photos": 1}
    payload = build_pseudo_label_json(images, CLASSES, keep_empty=False, info={"kinds_kept": kept})
    quality = pseudo_label_file_quality(payload, truth)
    assert quality["distractors_kept"] == 2 / 3 and quality["kept_photos"] == 1
    assert (quality["images"], quality["boxes"], quality["precision"]) == (3, 4, 0.5)
    assert distractors_kept([dataclasses.replace(image, kind="") for image in images], [0]) == {}


def test_strategies_keep_ceil_of_fraction_and_random_is_seeded():
    images = [image("i%02d" % k, score=-k / 10, confidence=k / 10) for k in range(10)]
    assert select_by_strategy(images, "image_score", 0.25).tolist() == [
        0,
        1,
        2,
    ]  # ceil(2.5) = 3, best first
    assert select_by_strategy(images, "confidence", 0.3).tolist() == [9, 8, 7]
    draw = select_by_strategy(images, "random", 0.3, seed=3)
    assert (
        len(draw) == 3
        and draw.tolist() == select_by_strategy(images, "random", 0.3, seed=3).tolist()
    )
    assert select_by_strategy(images, "all", 0.3).tolist() == list(
        range(10)
    )  # every image, by image score
    with pytest.raises(ValueError, match="unknown selection strategy 'softmax'"):
        select_by_strategy(images, "softmax", 0.3)


def test_strategy_table_lists_every_strategy():
    images, truth = quality_fixture()
    rows = compare_strategies(images, truth, 0.5, seed=0)
    assert [row["strategy"] for row in rows] == ["image_score", "confidence", "random", "all"]
    table = markdown_table(rows)
    assert "| image_score | 2 | 0 | 3 | 0.667 | 0.667 | 0.500 |" in table
    with pytest.raises(ValueError, match="image 'good' has no ground truth"):
        selection_quality(images, {}, [0])


def test_selection_csv_and_json_use_the_ranking_value_and_leave_the_other_signals_alone(tmp_path):
    """In box mode an image ranks by its aggregate box value, not by an image score it may also have."""
    images = [image("a", [(0, 0, 5, 5)], [0], [0.9], score=-0.1, confidence=0.2),
              image("b", [(0, 0, 5, 5)], [1], [0.8], score=-0.9, confidence=0.9)]  # fmt: skip
    images[0].ranking_value, images[1].ranking_value = -7.0, -3.0  # the box ranking: b before a
    images[0].box_scores, images[1].box_scores = [-7.0], [-3.0]
    assert select_by_strategy(images, "image_score", 0.5).tolist() == [1]
    assert select_by_strategy(images, "all", 0.5).tolist() == [1, 0]
    assert select_by_strategy(images, "confidence", 0.5).tolist() == [1]  # by mean_confidence
    images[1].mean_confidence = 0.1
    assert select_by_strategy(images, "confidence", 0.5).tolist() == [0]
    assert [i.image_score for i in images] == [-0.1, -0.9]  # untouched by selection
    header, rows = score_table(images, ranks=[2, 1], selected=[False, True])
    assert [row[header.index("score")] for row in rows] == [repr(-7.0), repr(-3.0)]
    assert [row[header.index("confidence")] for row in rows] == [repr(0.2), repr(0.1)]
    payload = build_pseudo_label_json(images[::-1], CLASSES, keep_empty=False, info={})
    assert [entry["image_score"] for entry in payload["images"]] == [-3.0, -7.0]
    unscored = ScoredImage("c", "/data/a/c.jpg", 10, 10, [], [], [])
    assert (
        math.isnan(unscored.image_score)
        and math.isnan(unscored.ranking_value)
        and unscored.terms == {}
    )
    assert (
        unscored.box_scores == []
        and unscored.mean_confidence == 0.0
        and unscored.ignore_boxes == []
    )
