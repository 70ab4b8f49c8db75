"""The synthetic VOC-format generator: layout, valid annotations, determinism, atomic output."""

import hashlib
import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from imagescore_det.data.synthetic import (
    MANIFEST_NAME,
    SYNTHETIC_CLASSES,
    ensure_synthetic_voc,
    generate_synthetic_voc,
    main,
    render_synthetic_image,
)

COUNTS = dict(num_labelled=6, num_unlabelled=6, num_test=4)
EXPECTED_IDS = {
    "labelled": ["2007_%06d" % i for i in range(1, 7)],
    "unlabelled": ["2012_%06d" % i for i in range(1, 7)],
    "test": ["2007_%06d" % (500000 + i) for i in range(1, 5)],
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "synthetic_voc"
    return out, generate_synthetic_voc(out, seed=3, **COUNTS)


def split_ids(dirname, split):
    with open(os.path.join(dirname, "ImageSets", "Main", split + ".txt")) as f:
        return f.read().split()


def read_annotation(dirname, image_id):
    root = ET.parse(os.path.join(dirname, "Annotations", image_id + ".xml")).getroot()
    size = root.find("size")
    objects = [
        (
            obj.find("name").text,
            int(obj.find("truncated").text),
            int(obj.find("difficult").text),
            tuple(int(obj.find("bndbox/" + k).text) for k in ("xmin", "ymin", "xmax", "ymax")),
        )
        for obj in root.findall("object")
    ]
    return root, int(size.find("width").text), int(size.find("height").text), objects


def file_hashes(root):
    hashes = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                hashes[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return hashes


def test_layout_and_split_files_list_exactly_the_generated_ids(generated):
    out, splits = generated
    assert splits == {
        "labelled": (str(out / "VOC2007"), "trainval"),
        "unlabelled": (str(out / "VOC2012"), "trainval"),
        "test": (str(out / "VOC2007"), "test"),
    }
    for key, (dirname, split) in splits.items():
        assert split_ids(dirname, split) == EXPECTED_IDS[key]
    for year, keys in (("VOC2007", ("labelled", "test")), ("VOC2012", ("unlabelled",))):
        ids = sorted(i for key in keys for i in EXPECTED_IDS[key])
        assert sorted(os.listdir(out / year / "JPEGImages")) == [i + ".jpg" for i in ids]
        assert sorted(os.listdir(out / year / "Annotations")) == [i + ".xml" for i in ids]
    assert sorted(os.listdir(out)) == sorted([MANIFEST_NAME, "VOC2007", "VOC2012"])
    assert sorted(os.listdir(out.parent)) == ["synthetic_voc"]  # no temporary folder left behind


def test_annotations_are_valid_voc_and_match_the_images(generated):
    out, splits = generated
    for key, (dirname, split) in splits.items():
        for image_id in split_ids(dirname, split):
            root, width, height, objects = read_annotation(dirname, image_id)
            assert root.find("filename").text == image_id + ".jpg"
            assert root.find("folder").text == os.path.basename(dirname)
            assert root.find("size/depth").text == "3" and root.find("segmented").text == "0"
            with Image.open(os.path.join(dirname, "JPEGImages", image_id + ".jpg")) as image:
                assert image.format == "JPEG" and image.mode == "RGB"
                assert image.size == (width, height)
            assert 160 <= width <= 400 and 160 <= height <= 400
            assert 1 <= len(objects) <= 4
            for name, truncated, difficult, (x0, y0, x1, y1) in objects:
                assert name in SYNTHETIC_CLASSES and truncated in (0, 1) and difficult == 0
                assert 1 <= x0 < x1 <= width and 1 <= y0 < y1 <= height
                assert max(x1 - x0, y1 - y0) + 1 <= 0.45 * min(width, height)
            for obj in root.findall("object"):
                assert obj.find("pose").text == "Unspecified"


def test_boxes_are_tight_around_visible_pixels_and_truncation_touches_the_border():
    truncated, objects_per_image, difficulties = 0, [], []
    for number in range(1, 41):
        sample = render_synthetic_image(0, 2012, number)
        height, width = sample.image.shape[:2]
        assert sample.image.dtype == np.uint8 and sample.image.shape[2] == 3
        objects_per_image.append(len(sample.objects))
        difficulties.append(sample.difficulty)
        covered = np.zeros((height, width), dtype=int)
        for obj in sample.objects:
            rows, cols = np.flatnonzero(obj.mask.any(1)), np.flatnonzero(obj.mask.any(0))
            assert obj.box == (cols[0] + 1, rows[0] + 1, cols[-1] + 1, rows[-1] + 1)
            covered += obj.mask
            if obj.truncated:
                truncated += 1
                x0, y0, x1, y1 = obj.box
                assert x0 == 1 or y0 == 1 or x1 == width or y1 == height
        assert covered.max() <= 1  # visible masks never overlap: the box is drawn on what shows
    assert truncated > 0
    assert set(objects_per_image) == {1, 2, 3, 4}
    assert min(difficulties) < 0.35 < max(difficulties)  # easy and hard images are mixed


def test_same_settings_give_byte_identical_files(tmp_path):
    first = generate_synthetic_voc(
        tmp_path / "a", seed=7, num_labelled=3, num_unlabelled=2, num_test=2
    )
    generate_synthetic_voc(tmp_path / "b", seed=7, num_labelled=3, num_unlabelled=2, num_test=2)
    generate_synthetic_voc(tmp_path / "c", seed=8, num_labelled=3, num_unlabelled=2, num_test=2)
    hashes_a, hashes_b, hashes_c = (file_hashes(tmp_path / d) for d in "abc")
    assert hashes_a == hashes_b and len(hashes_a) == 7 * 2 + 3 + 1
    jpegs = [k for k in hashes_a if k.endswith(".jpg")]
    assert all(hashes_a[k] != hashes_c[k] for k in jpegs)
    assert first["labelled"][0] == str(tmp_path / "a" / "VOC2007")


def test_each_split_is_independent_of_the_other_counts(tmp_path, generated):
    out, _ = generated
    generate_synthetic_voc(tmp_path / "other", seed=3, num_labelled=2, num_unlabelled=4, num_test=0)
    reference, other = file_hashes(out), file_hashes(tmp_path / "other")
    shared = [k for k in other if k.endswith((".jpg", ".xml"))]
    assert len(shared) == 2 * (2 + 4)
    assert all(other[k] == reference[k] for k in shared)
    assert split_ids(tmp_path / "other" / "VOC2007", "test") == []


def test_refuses_to_overwrite_a_non_empty_folder_unless_asked(tmp_path):
    out = tmp_path / "synthetic_voc"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match=str(out)):
        generate_synthetic_voc(out, num_labelled=2, num_unlabelled=0, num_test=0)
    assert os.listdir(out) == ["keep.txt"]
    assert sorted(os.listdir(tmp_path)) == ["synthetic_voc"]
    generate_synthetic_voc(out, num_labelled=2, num_unlabelled=0, num_test=0, overwrite=True)
    assert sorted(os.listdir(out)) == sorted([MANIFEST_NAME, "VOC2007", "VOC2012"])
    assert sorted(os.listdir(tmp_path)) == ["synthetic_voc"]
    empty = tmp_path / "empty"
    empty.mkdir()
    generate_synthetic_voc(
        empty, num_labelled=0, num_unlabelled=2, num_test=0
    )  # an empty folder is fine
    assert split_ids(empty / "VOC2012", "trainval") == ["2012_000001", "2012_000002"]


@pytest.mark.parametrize(
    "settings, named",
    [
        (dict(num_labelled=-1, num_unlabelled=2, num_test=2), "num_labelled"),
        (dict(num_labelled=2, num_unlabelled=2.5, num_test=2), "num_unlabelled"),
        (dict(num_labelled=2, num_unlabelled=2, num_test=1), "num_test"),
        (dict(num_labelled=0, num_unlabelled=0, num_test=0), "all 0"),
        (dict(num_labelled=2, num_unlabelled=2, num_test=2, seed=-3), "seed"),
        (dict(num_labelled=10**6, num_unlabelled=2, num_test=2), "num_labelled"),
    ],
)
def test_bad_settings_raise_naming_the_setting(tmp_path, settings, named):
    with pytest.raises(ValueError, match=named):
        generate_synthetic_voc(tmp_path / "out", **settings)
    with pytest.raises(ValueError, match=named):
        ensure_synthetic_voc(tmp_path / "out", **settings)
    assert os.listdir(tmp_path) == []


def test_ensure_reuses_a_complete_folder_and_rejects_an_incomplete_one(tmp_path):
    out = tmp_path / "synthetic_voc"
    settings = dict(num_labelled=2, num_unlabelled=2, num_test=2, seed=1)
    splits = ensure_synthetic_voc(out, **settings)
    image = out / "VOC2012" / "JPEGImages" / "2012_000002.jpg"
    stamp = os.stat(image).st_mtime_ns, os.stat(image).st_ino
    assert ensure_synthetic_voc(out, **settings) == splits
    assert (os.stat(image).st_mtime_ns, os.stat(image).st_ino) == stamp  # reused, not regenerated
    with pytest.raises(ValueError, match="num_test"):
        ensure_synthetic_voc(out, **dict(settings, num_test=3))
    image.unlink()
    with pytest.raises(ValueError, match="incomplete.*2012_000002.jpg"):
        ensure_synthetic_voc(out, **settings)
    assert not image.exists()  # the broken folder was left alone, not used or patched
    ensure_synthetic_voc(out, overwrite=True, **settings)
    assert image.exists()


def test_cli_generates_and_documents_every_flag(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = capsys.readouterr().out
    for flag in ("--out", "--labelled", "--unlabelled", "--test", "--seed", "--overwrite"):
        assert flag in help_text
    out = tmp_path / "cli"
    main(["--out", str(out), "--labelled", "2", "--unlabelled", "3", "--test", "2", "--seed", "5"])
    assert "ms/image" in capsys.readouterr().out
    assert split_ids(out / "VOC2012", "trainval") == ["2012_000001", "2012_000002", "2012_000003"]
    with pytest.raises(ValueError, match="not empty"):
        main(["--out", str(out), "--labelled", "2", "--unlabelled", "0", "--test", "0"])


@pytest.mark.detectron2
def test_detectron2_voc_loader_reads_every_split(generated):
    pytest.importorskip("detectron2")
    from detectron2.data.datasets.pascal_voc import load_voc_instances
    from detectron2.structures import BoxMode

    _, splits = generated
    for key, (dirname, split) in splits.items():
        records = load_voc_instances(dirname, split, SYNTHETIC_CLASSES)
        assert [r["image_id"] for r in records] == EXPECTED_IDS[key]
        for record in records:
            _, width, height, objects = read_annotation(dirname, record["image_id"])
            assert (record["width"], record["height"]) == (width, height)
            assert os.path.isfile(record["file_name"])
            assert len(record["annotations"]) == len(objects)
            for ann, (name, _, _, (x0, y0, x1, y1)) in zip(record["annotations"], objects):
                assert ann["bbox_mode"] == BoxMode.XYXY_ABS
                assert SYNTHETIC_CLASSES[ann["category_id"]] == name
                assert ann["bbox"] == [x0 - 1.0, y0 - 1.0, float(x1), float(y1)]
                assert 0 <= ann["bbox"][0] < ann["bbox"][2] <= width
                assert 0 <= ann["bbox"][1] < ann["bbox"][3] <= height
