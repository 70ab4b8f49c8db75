"""Bad inputs fail at start-up with a message naming the key, file or value at fault, and resumes and
reruns never mix runs: one test per row of the table in issue 21."""

import json
import math
import os
import shutil

import pytest
import torch

pytest.importorskip("detectron2")
pytestmark = pytest.mark.detectron2

from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from helpers import CONFIGS, DEMO_CONFIG, TINY_OPTS, load_tool, schedule, train_args  # noqa: E402

from imagescore_det.config import build_config  # noqa: E402

train_net = load_tool("train_net")
score_voc = load_tool("score_voc")
ssod_study = load_tool("ssod_study")


def score_args(output_dir, *opts, weights=None):
    flags = ["--config-file", DEMO_CONFIG] + (["--weights", *weights] if weights else [])
    flags += [
        "--output-dir",
        str(output_dir),
    ]  # after --weights, which takes every name up to the next flag
    return score_voc.argument_parser().parse_args(flags + TINY_OPTS + schedule(8) + list(opts))


@pytest.fixture(scope="module")
def tiny_run(data_root, tmp_path_factory):
    """A tiny run trained past its swap (iteration 4) to 8: its folder holds pseudo labels and model_final."""
    output_dir = tmp_path_factory.mktemp("tiny_run")
    train_net.main(train_args(output_dir, 8))
    return output_dir


def checkpoint_of(tmp_path, *opts):
    """A freshly initialised detector built from the tiny demo config with ``opts``, saved as a checkpoint."""
    model = build_model(build_config(DEMO_CONFIG, TINY_OPTS + ["MODEL.DEVICE", "cpu", *opts]))
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("other")
    return str(tmp_path / "other.pth")


# Row 1: a checkpoint of another class count scored exit 0 with a random box predictor.
def test_score_voc_refuses_a_checkpoint_that_does_not_fit(data_root, tmp_path):
    weights = checkpoint_of(tmp_path, "MODEL.ROI_HEADS.NUM_CLASSES", "3")
    output_dir = tmp_path / "scores"
    with pytest.raises(
        ValueError,
        match=r"other\.pth does not fit the model: parameter 'roi_heads\.box_predictor\.cls_score\.weight' has shape \(4, 32\) in the checkpoint but \(6, 32\)",
    ):
        score_voc.main(score_args(output_dir, weights=[weights]))
    assert not output_dir.exists()  # refused before anything was written


# Row 8: a text file or a reference file given as weights failed deep inside torch without naming it.
@pytest.mark.parametrize("kind", ["text", "reference"])
def test_score_voc_names_a_file_that_is_not_a_checkpoint(tiny_run, tmp_path, kind):
    if kind == "text":
        path = tmp_path / "notes.txt"
        path.write_text("not a checkpoint\n")
        message = r"notes\.txt is not a PyTorch checkpoint"
    else:
        path = tiny_run / "imagescore_reference.pt"
        message = r"imagescore_reference\.pt is not a detector checkpoint"
    with pytest.raises(ValueError, match=message):
        score_voc.main(score_args(tmp_path / "scores", weights=[str(path)]))
    assert not (tmp_path / "scores").exists()


def test_score_voc_checks_its_output_folder_before_building_a_model(tiny_run, tmp_path):
    occupied = tmp_path / "a_file"
    occupied.write_text("")
    with pytest.raises(ValueError, match="--output-dir .*a_file is a file"):
        score_voc.main(score_args(occupied, weights=[str(tiny_run / "model_final.pth")]))


# Rows 2 and 11: a copied folder resumed with the other run's file; a lost file left no way on.
@pytest.mark.parametrize("damage", ["deleted_in_a_copy", "truncated"])
def test_resume_with_a_lost_pseudo_label_file_scores_again_in_its_own_folder(
    tiny_run, tmp_path, damage
):
    original = tiny_run / "pseudo_labels.json"
    before = original.read_bytes()
    resumed = tmp_path / "resumed"
    shutil.copytree(tiny_run, resumed)
    if damage == "truncated":
        (resumed / "pseudo_labels.json").write_bytes(before[: len(before) // 2])
    else:
        (resumed / "pseudo_labels.json").unlink()
    train_net.main(train_args(resumed, 10, "--resume"))
    log = (resumed / "log.txt").read_text()
    assert (
        "pseudo-label file cannot be read" in log
        and "scoring again with the model resumed at iteration 8" in log
    )
    with open(resumed / "pseudo_labels.json") as f:
        assert (
            json.load(f)["info"]["model"]["iteration"] == 8
        )  # scored by the resumed model, in its own folder
    assert original.read_bytes() == before  # the other run's file was never read or rewritten


# Row 3: a study rerun with another setting reused the old results.
def test_a_study_rerun_with_another_setting_trains_again_unless_told(empty_data_root, tmp_path):
    out = tmp_path / "study"
    flags = [
        "--config-file",
        DEMO_CONFIG,
        "--seeds",
        "0",
        "--arms",
        "control",
        "--output-dir",
        str(out),
    ]
    opts = TINY_OPTS + schedule(10, swap_iter=4, eval_period=2)
    changed = opts + ["SOLVER.BASE_LR", "0.0005"]
    ssod_study.main(flags + opts)
    log = out / "seed0" / "control" / "stdout.log"
    first = log.stat().st_mtime_ns
    ssod_study.main(flags + ["--reuse-stale"] + changed)
    assert log.stat().st_mtime_ns == first  # kept, as asked, and said so
    assert "Reused with --reuse-stale" in (out / "summary.md").read_text()
    ssod_study.main(flags + changed)
    assert log.stat().st_mtime_ns != first  # the changed setting trained again
    with open(out / "seed0" / "control" / "done.json") as f:
        assert "SOLVER.BASE_LR 0.0005" in json.load(f)["command"]  # under the new setting
    assert "Reused" not in (out / "summary.md").read_text()


def test_a_study_with_a_bad_setting_trains_nothing_and_names_it(empty_data_root, tmp_path):
    out = tmp_path / "study"
    argv = [
        "--config-file",
        DEMO_CONFIG,
        "--seeds",
        "0",
        "--arms",
        "control",
        "imagescore",
        "--output-dir",
        str(out),
    ]
    with pytest.raises(
        ValueError, match="IMAGESCORE.SELECT_FRACTION is 0 with IMAGESCORE.SELECTION 'image_score'"
    ):
        ssod_study.main(
            argv + TINY_OPTS + schedule(10, eval_period=2) + ["IMAGESCORE.SELECT_FRACTION", "0.0"]
        )
    assert not (out / "seed0").exists()


# Rows 4-7, 9 and 10: each a clear error before iteration 0, naming the key and the value.
BAD_SETTINGS = [
    (("MODEL.ROI_HEADS.NUM_CLASSES", "3"), "MODEL.ROI_HEADS.NUM_CLASSES is 3, but labelled dataset 'synthetic_voc_2007_trainval' has 5 classes"),
    (("MODEL.ROI_HEADS.NUM_CLASSES", "8"), "MODEL.ROI_HEADS.NUM_CLASSES is 8"),
    (("IMAGESCORE.SCORE_MODE", "boxes"), "IMAGESCORE.SCORE_MODE is 'boxes'; choose one of 'image', 'box'"),
    (("IMAGESCORE.SELECT_FRACTION", "1.5"), r"IMAGESCORE.SELECT_FRACTION is 1.5; it must lie in \[0, 1\]"),
    (("IMAGESCORE.BOX.FILTER_QUANTILE", "-0.1"), r"IMAGESCORE.BOX.FILTER_QUANTILE is -0.1; it must lie in \[0, 1\]"),
    (("IMAGESCORE.SELECTION", "box_filter"), "IMAGESCORE.SELECTION 'box_filter' filters pseudo boxes by their box score, but IMAGESCORE.SCORE_MODE is 'image'"),
    (("IMAGESCORE.BOX.AGGREGATE", "median"), "IMAGESCORE.BOX.AGGREGATE is 'median'"),
    (("IMAGESCORE.THRESHOLD_STAT", "linf"), "IMAGESCORE.THRESHOLD_STAT is 'linf'"),
    (("IMAGESCORE.FORMULA", "overlapp"), "IMAGESCORE.FORMULA is 'overlapp'"),
    (("IMAGESCORE.UNLABELLED_DATASETS", "('nowhere',)"), r"unlabelled dataset 'nowhere' \(in IMAGESCORE.UNLABELLED_DATASETS\) is not registered"),
    (("IMAGESCORE.SELECT_FRACTION", "0.0"), "IMAGESCORE.SELECT_FRACTION is 0 with IMAGESCORE.SELECTION 'image_score': no image would be kept"),
    (("IMAGESCORE.SWAP_ITER", "20"), r"IMAGESCORE.SWAP_ITER is 20, not in \[0, SOLVER.MAX_ITER=8\)"),
    (("IMAGESCORE.LABELLED_DATASETS", "()"), "IMAGESCORE.LABELLED_DATASETS is empty"),
    (("IMAGESCORE.SCORE_BATCH_SIZE", "0"), "IMAGESCORE.SCORE_BATCH_SIZE must be an integer >= 1, got 0"),
    (("IMAGESCORE.SCORE_SHARD_SIZE", "-1"), r"IMAGESCORE.SCORE_SHARD_SIZE must be an integer >= 0 \(0: no shards\), got -1"),
    (("IMAGESCORE.REGISTER_DATASETS", "['x=folder:{root}', 'x=folder:{root}']"), "IMAGESCORE.REGISTER_DATASETS declares 'x' more than once"),
]  # fmt: skip


@pytest.mark.parametrize(
    "setting, message", BAD_SETTINGS, ids=[" ".join(s) for s, _ in BAD_SETTINGS]
)
def test_a_bad_setting_fails_before_iteration_0(data_root, tmp_path, setting, message):
    key, value = setting[0], setting[1].format(root=data_root)
    with pytest.raises(ValueError, match=message):
        train_net.main(train_args(tmp_path, 8, key, value))
    assert not (tmp_path / "metrics.json").exists() and not list(tmp_path.glob("model_*.pth"))


@pytest.mark.parametrize(
    "setting", [("IMAGESCORE.SCORE_MODE", "boxes"), ("IMAGESCORE.SELECT_FRACTION", "0.0")]
)
def test_score_voc_checks_the_config_before_scoring(tiny_run, tmp_path, setting):
    with pytest.raises(ValueError, match=setting[0]):
        score_voc.main(
            score_args(tmp_path / "scores", *setting, weights=[str(tiny_run / "model_final.pth")])
        )
    assert not (tmp_path / "scores").exists()


def test_the_paper_config_with_one_bad_value_fails_before_iteration_1(tmp_path):
    """voc_ssl.yaml swaps at iteration 60,000: a bad value must not wait for it (nor for VOC on disk)."""
    args = train_net.default_argument_parser().parse_args(
        [
            "--config-file",
            os.path.join(CONFIGS, "voc_ssl.yaml"),
            "OUTPUT_DIR",
            str(tmp_path),
            "IMAGESCORE.FORMULA",
            "overlapp",
        ]
    )
    with pytest.raises(ValueError, match="IMAGESCORE.FORMULA is 'overlapp'"):
        train_net.main(args)
    assert not (tmp_path / "metrics.json").exists()  # not one iteration ran


def test_a_resumed_run_refuses_a_checkpoint_of_another_model(data_root, tmp_path):
    weights = checkpoint_of(tmp_path, "IMAGESCORE.VGG.WIDTH_DIVISOR", "4")
    with open(tmp_path / "last_checkpoint", "w") as f:
        f.write("other.pth")
    with pytest.raises(
        ValueError, match=r"other\.pth does not fit the model: parameter '.*' has shape"
    ):
        train_net.main(train_args(tmp_path, 8, "--resume"))
    assert torch.load(weights, weights_only=False)["model"]  # the file itself was left as it was


def test_a_model_that_detects_nothing_on_a_coco_set_gets_ap_0_not_nan(tmp_path, caplog):
    """COCOEvaluator reports NaN when there is no detection at all; a study would average that as a
    number. The project's COCO evaluator reports AP 0 and says so; a size the set lacks stays NaN."""
    from detectron2.data.datasets import register_coco_instances
    from detectron2.structures import Boxes, Instances

    from imagescore_det.evaluation.evaluators import build_evaluator

    coco = {
        "images": [{"id": 1, "file_name": "a.png", "height": 64, "width": 64}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [10, 10, 30, 30],
                "area": 900,
                "iscrowd": 0,
            }
        ],  # fmt: skip
        "categories": [{"id": 1, "name": "nucleus"}],
    }
    (tmp_path / "set.json").write_text(json.dumps(coco))
    register_coco_instances("nothing_detected_test", {}, str(tmp_path / "set.json"), str(tmp_path))
    cfg = build_config(DEMO_CONFIG, ["OUTPUT_DIR", str(tmp_path / "out")])
    evaluator = build_evaluator(cfg, "nothing_detected_test")
    evaluator.reset()
    empty = Instances((64, 64), pred_boxes=Boxes(torch.zeros(0, 4)), scores=torch.zeros(0),
                      pred_classes=torch.zeros(0, dtype=torch.long))  # fmt: skip
    evaluator.process([{"image_id": 1}], [{"instances": empty}])
    with caplog.at_level("WARNING"):
        box = evaluator.evaluate()["bbox"]
    assert box["AP"] == box["AP50"] == box["AP75"] == 0.0
    assert math.isnan(box["APs"])  # the set has no small box: undefined, as before
    assert "detected nothing on nothing_detected_test" in caplog.text
