"""Uncurated unlabelled pools (issue 18, item 1) and the selection gallery (item 4), on tiny sets.

The clean set is pinned by a hash of its files taken before distractors existed; an uncurated pool
changes only its unlabelled distractors, records every unlabelled image's kind, and keeps only
objects of the labelled classes as ground truth. The selection writer counts the distractors a
selection kept, and the gallery shows the best and the worst images.
"""

import csv
import hashlib
import json
import math
import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from helpers import DEMO_CONFIG
from PIL import Image

pytest.importorskip("detectron2")
pytestmark = pytest.mark.detectron2

from detectron2.structures import Boxes, Instances  # noqa: E402

from imagescore_det.config import build_config  # noqa: E402
from imagescore_det.data.ground_truth import ground_truth_from_dicts  # noqa: E402
from imagescore_det.data.pseudo_labels import load_pseudo_labels  # noqa: E402
from imagescore_det.data.synthetic import (  # noqa: E402
    CLEAN_KIND,
    DISTRACTOR_KINDS,
    KIND_TAG,
    SYNTHETIC_CLASSES,
    distractor_kinds,
    generate_synthetic_voc,
    render_distractor,
)
from imagescore_det.data.voc import (  # noqa: E402
    load_synthetic_voc,
    register_synthetic_voc,
    synthetic_root,
)
from imagescore_det.detection.modes import to_scored_image  # noqa: E402
from imagescore_det.detection.selection import distractors_kept  # noqa: E402
from imagescore_det.engine.config_check import check_imagescore_config  # noqa: E402
from imagescore_det.evaluation.pseudo_label_quality import (  # noqa: E402
    pseudo_label_file_quality,
    selection_quality,
)
from imagescore_det.evaluation.selection_gallery import (  # noqa: E402
    CAPTION_HEIGHT,
    PANEL_SIDE,
    draw_selection_gallery,
    write_selection_and_gallery,
)
from imagescore_det.scoring import Reference  # noqa: E402
from imagescore_det.structures import ScoredImage  # noqa: E402

COUNTS = dict(num_labelled=2, num_unlabelled=8, num_test=2, seed=0)
#: sha256 over (path, sha256 of the file) of every file of the clean set with COUNTS, computed with the
#: generator as it was before distractors existed (commit ebe9200; NumPy 2.4.6, Pillow 13.0.0).
CLEAN_SET_SHA256 = "c37ec9e0714914fa8df477f61866ecdf559bb12426f87c1830b9037306471c07"


def set_sha256(root) -> str:
    digest = hashlib.sha256()
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                entry = "%s %s\n" % (
                    os.path.relpath(path, root),
                    hashlib.sha256(f.read()).hexdigest(),
                )
            digest.update(entry.encode())
    return digest.hexdigest()


def file_digests(root, sub):
    top = os.path.join(root, sub)
    digests = {}
    for folder, _, files in os.walk(top):
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                digests[os.path.relpath(os.path.join(folder, name), top)] = f.read()
    return digests


def annotation(root, image_id):
    return ET.parse(os.path.join(root, "VOC2012", "Annotations", image_id + ".xml")).getroot()


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """The clean set (fraction 0, kinds other than the default: they do not matter at 0) and the
    uncurated one (fraction 0.5: 4 of the 8 unlabelled images, one of each kind), same counts."""
    root = tmp_path_factory.mktemp("datasets")
    clean = synthetic_root(str(root), dict(COUNTS, distractors=["novel"]))
    uncurated = synthetic_root(str(root), dict(COUNTS, distractor_fraction=0.5))
    generate_synthetic_voc(clean, distractors=["novel"], **COUNTS)
    generate_synthetic_voc(uncurated, distractor_fraction=0.5, **COUNTS)
    return clean, uncurated


def test_fraction_0_is_the_clean_set_bit_for_bit(sets):
    clean, _ = sets
    assert os.path.basename(clean) == "synthetic_voc_seed0_l2_u8_t2"  # the clean set's folder
    assert set_sha256(clean) == CLEAN_SET_SHA256


def test_labelled_test_and_clean_unlabelled_images_do_not_change_with_the_distractors(sets):
    clean, uncurated = sets
    assert os.path.basename(uncurated) == "synthetic_voc_seed0_l2_u8_t2_d0.5"
    assert file_digests(clean, "VOC2007") == file_digests(uncurated, "VOC2007")
    kinds = distractor_kinds(dict(COUNTS, distractor_fraction=0.5, distractors=DISTRACTOR_KINDS))
    assert sorted(kinds.values()) == sorted(DISTRACTOR_KINDS)  # one of each of the 4 kinds
    before, after = file_digests(clean, "VOC2012"), file_digests(uncurated, "VOC2012")
    for number in range(1, 9):
        image_id = "2012_%06d" % number
        same = before["JPEGImages/%s.jpg" % image_id] == after["JPEGImages/%s.jpg" % image_id]
        assert same == (number not in kinds), image_id
        kind = annotation(uncurated, image_id).findtext(KIND_TAG)
        assert kind == kinds.get(number, CLEAN_KIND)
        assert annotation(clean, image_id).find(KIND_TAG) is None
        if number not in kinds:  # the same objects, the kind element added
            objects = [ET.tostring(o) for o in annotation(clean, image_id).iter("object")]
            assert objects == [
                ET.tostring(o) for o in annotation(uncurated, image_id).iter("object")
            ]
    with open(os.path.join(uncurated, "synthetic_voc.json")) as f:
        manifest = json.load(f)
    assert manifest["distractor_fraction"] == 0.5
    assert manifest["distractor_counts"] == {kind: 1 for kind in DISTRACTOR_KINDS}


def test_the_loader_carries_each_kind_and_only_labelled_classes_are_ground_truth(sets):
    _, uncurated = sets
    records = load_synthetic_voc(os.path.join(uncurated, "VOC2012"), "trainval", SYNTHETIC_CLASSES)
    by_kind = {}
    for record in records:
        by_kind.setdefault(record["kind"], []).append(record)
        names = [
            o.findtext("name") for o in annotation(uncurated, record["image_id"]).iter("object")
        ]
        assert set(names) <= set(SYNTHETIC_CLASSES) and len(names) == len(record["annotations"])
    assert {kind: len(found) for kind, found in by_kind.items()} == dict(
        {kind: 1 for kind in DISTRACTOR_KINDS}, clean=4
    )
    for kind in ("novel", "empty", "photos"):
        assert by_kind[kind][0]["annotations"] == []
    assert by_kind["shifted"][0]["annotations"] and all(
        by_kind[CLEAN_KIND][i]["annotations"] for i in range(4)
    )
    labelled = load_synthetic_voc(os.path.join(uncurated, "VOC2007"), "trainval", SYNTHETIC_CLASSES)
    assert labelled and not any("kind" in record for record in labelled)


def test_each_kind_looks_as_it_should():
    for number in range(1, 7):
        novel = render_distractor(0, 2012, number, "novel")
        empty = render_distractor(0, 2012, number, "empty")
        photo = render_distractor(0, 2012, number, "photos")
        shifted = render_distractor(0, 2012, number, "shifted")
        assert novel.objects == () and empty.objects == () and photo.objects == ()
        assert photo.image.max() > photo.image.min() and 160 <= min(photo.image.shape[:2])
        assert 1 <= len(shifted.objects) <= 6
        short = min(shifted.image.shape[:2])
        # The labelled classes, smaller than the labelled set draws them.
        for obj in shifted.objects:
            x0, y0, x1, y1 = obj.box
            assert obj.name in SYNTHETIC_CLASSES and max(x1 - x0, y1 - y0) + 1 <= 0.22 * short
        assert not np.array_equal(
            novel.image, render_distractor(0, 2012, number + 10, "novel").image
        )
    again = render_distractor(0, 2012, 6, "novel")  # the same settings draw the same image
    assert np.array_equal(novel.image, again.image)


def test_kinds_come_in_equal_shares_and_nest_across_fractions():
    settings = dict(COUNTS, num_unlabelled=12, distractors=["novel", "empty"])
    three_quarters = distractor_kinds(dict(settings, distractor_fraction=0.75))
    assert sorted(three_quarters.values()) == ["empty"] * 4 + ["novel"] * 5
    half = distractor_kinds(dict(settings, distractor_fraction=0.5))
    assert sorted(half.values()) == ["empty"] * 3 + ["novel"] * 3
    assert set(half) < set(three_quarters) and all(1 <= n <= 12 for n in three_quarters)
    assert distractor_kinds(dict(settings, distractor_fraction=0.0)) == {}


def test_folder_names_keep_the_default_and_name_every_other_combination(tmp_path):
    root = str(tmp_path)
    assert synthetic_root(root) == os.path.join(root, "synthetic_voc")
    assert synthetic_root(root, {"distractors": ["photos"]}) == os.path.join(root, "synthetic_voc")
    assert synthetic_root(root, {"distractor_fraction": 0.25}).endswith("synthetic_voc_d0.25")
    named = synthetic_root(root, {"distractor_fraction": 0.5, "distractors": ["novel", "photos"]})
    assert named.endswith("synthetic_voc_d0.5_novel-photos")


FRACTION, KINDS = "IMAGESCORE.SYNTHETIC.DISTRACTOR_FRACTION", "IMAGESCORE.SYNTHETIC.DISTRACTORS"


@pytest.mark.parametrize(
    "key, value, message",
    [
        (FRACTION, "1.0", FRACTION + " is 1.0; it must be a number in \\[0, 1\\)"),
        (FRACTION, "-0.1", FRACTION + " is -0.1"),
        (
            KINDS,
            "['novel','ghosts']",
            KINDS + " names the unknown kind\\(s\\) 'ghosts'; choose from",
        ),
        (KINDS, "[]", KINDS + " is \\[\\]; it must list at least one distractor kind"),
        (KINDS, "['empty','empty']", KINDS + " names empty more than once"),
    ],
)
def test_bad_distractor_settings_are_config_errors(key, value, message):
    with pytest.raises(ValueError, match=message):
        check_imagescore_config(build_config(DEMO_CONFIG, [key, value]), training=False)
    check_imagescore_config(build_config(DEMO_CONFIG, [FRACTION, "0.5"]), training=False)


@pytest.mark.parametrize(
    "fraction, kinds, named",
    [(1.0, DISTRACTOR_KINDS, "distractor_fraction"), (0.2, ("novel", "dust"), "distractors")],
)
def test_the_generator_refuses_bad_distractor_settings(tmp_path, fraction, kinds, named):
    with pytest.raises(ValueError, match=named):
        generate_synthetic_voc(
            tmp_path / "out",
            distractor_fraction=fraction,
            distractors=kinds,
            num_labelled=2,
            num_unlabelled=2,
            num_test=2,
        )
    assert os.listdir(tmp_path) == []


def scored(records, shift):
    """Each record through to_scored_image, with one detection: its first ground-truth box moved by
    ``shift`` pixels (0: a correct pseudo label), or a made-up box where it has none."""
    images = []
    for rank, record in enumerate(records):
        annotations = record["annotations"]
        box = list(annotations[0]["bbox"]) if annotations else [5.0, 5.0, 60.0, 50.0]
        box = [box[0] + shift, box[1] + shift, box[2] + shift, box[3] + shift]
        instances = Instances(
            (record["height"], record["width"]),
            pred_boxes=Boxes(torch.tensor([box])),
            scores=torch.tensor([0.9]),
            pred_classes=torch.tensor([annotations[0]["category_id"] if annotations else 0]),
        )
        image = to_scored_image(record, {"instances": instances}, pseudo_score_thresh=0.5)
        image.ranking_value = image.image_score = -0.1 * rank
        images.append(image)
    return images


def test_distractors_kept_counts_each_kind_of_the_set():
    kinds = ["clean", "novel", "clean", "photos", "photos"]
    images = [
        ScoredImage(str(i), "%d.jpg" % i, 9, 9, [], [], [], kind=k) for i, k in enumerate(kinds)
    ]
    assert distractors_kept(images, [0, 1]) == {
        "distractors_kept": 0.5,
        "kept_novel": 1,
        "kept_photos": 0,
    }
    assert distractors_kept(images, [3, 4, 2, 0]) == {
        "distractors_kept": 0.5,
        "kept_novel": 0,
        "kept_photos": 2,
    }
    assert math.isnan(distractors_kept(images, [])["distractors_kept"])
    assert distractors_kept([ScoredImage("a", "a.jpg", 9, 9, [], [], [])], [0]) == {}


def test_the_swap_writer_adds_kinds_counts_and_a_gallery(sets, tmp_path):
    """write_selection_and_gallery, as the swap and score_voc call it: the CSV's kind column, the
    distractors kept in the JSON and its quality, and the gallery's panels."""
    _, uncurated = sets
    register_synthetic_voc(uncurated)
    try:
        cfg = build_config(
            DEMO_CONFIG,
            [
                "OUTPUT_DIR",
                str(tmp_path),
                "IMAGESCORE.SELECT_FRACTION",
                "0.5",
                "IMAGESCORE.KEEP_EMPTY",
                "True",
            ],
        )
        records = load_synthetic_voc(
            os.path.join(uncurated, "VOC2012"), "trainval", SYNTHETIC_CLASSES
        )
        images = scored(records, 0.0)
        reference = Reference(
            {"conv1": torch.ones(1, 2, 2)}, {"threshold_ratio": 0.5, "threshold_stat": "max"}
        )
        written = write_selection_and_gallery(cfg, reference, images, model_info={"test": True})
    finally:
        register_synthetic_voc(synthetic_root())
    kept = [image.kind for image in images[:4]]  # the 4 best: ranking value falls with the index
    share = sum(kind != CLEAN_KIND for kind in kept) / 4
    assert written["selected_ids"] == [image.image_id for image in images[:4]]
    assert written["kinds_kept"]["distractors_kept"] == share
    assert sum(v for k, v in written["kinds_kept"].items() if k.startswith("kept_")) == share * 4
    with open(written["scores"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert {row["image_id"]: row["kind"] for row in rows} == {
        r["image_id"]: r["kind"] for r in records
    }
    payload = load_pseudo_labels(written["pseudo_labels"])
    assert payload["info"]["kinds_kept"] == written["kinds_kept"]
    truth = ground_truth_from_dicts(records)
    assert pseudo_label_file_quality(payload, truth)["distractors_kept"] == share
    quality = selection_quality(images, truth, [0, 1, 2, 3])
    assert quality["distractors_kept"] == share and set(written["kinds_kept"]) <= set(quality)
    assert written["gallery"] == os.path.join(str(tmp_path), "selection_gallery.png")
    with Image.open(written["gallery"]) as png:  # 8 images: every one once, in one row of 8
        assert png.size == (8 * PANEL_SIDE, PANEL_SIDE + CAPTION_HEIGHT)


@pytest.mark.parametrize(
    "count, top, bottom, rows", [(8, 8, 0, 1), (12, 8, 4, 2), (20, 8, 8, 2), (3, 3, 0, 1)]
)
def test_the_gallery_holds_the_best_and_the_worst_images(sets, tmp_path, count, top, bottom, rows):
    clean, uncurated = sets
    records = load_synthetic_voc(os.path.join(uncurated, "VOC2012"), "trainval", SYNTHETIC_CLASSES)
    records += load_synthetic_voc(os.path.join(clean, "VOC2007"), "trainval", SYNTHETIC_CLASSES)
    records += load_synthetic_voc(os.path.join(clean, "VOC2007"), "test", SYNTHETIC_CLASSES)
    records = [dict(record) for record in (records * 2)[:count]]
    for number, record in enumerate(records):
        record["image_id"] = "%s#%d" % (record["image_id"], number)
    images = scored(records, 30.0)  # wrong boxes: the colours are not what is counted here
    gallery = draw_selection_gallery(
        images,
        str(tmp_path / "g.png"),
        class_names=SYNTHETIC_CLASSES,
        truth=ground_truth_from_dicts(records),
    )
    ids = [image.image_id for image in images]  # ranked as listed
    assert list(gallery.top) == ids[:top] and list(gallery.bottom) == ids[count - bottom :]
    columns = min(8, count)
    assert (gallery.rows, gallery.columns) == (rows, columns)
    with Image.open(gallery.path) as png:
        assert (
            png.size == gallery.size == (columns * PANEL_SIDE, rows * (PANEL_SIDE + CAPTION_HEIGHT))
        )
