"""tools/ssod_study.py end to end on a tiny schedule: one teacher, two arms from it, resumable."""
import csv
import json
import os

import pytest

pytest.importorskip("detectron2")
pytestmark = pytest.mark.detectron2

from imagescore_det.data.voc import register_synthetic_voc, synthetic_root  # noqa: E402

from tool_loader import load_tool  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "IMAGESCORE.VGG.WIDTH_DIVISOR", "8", "MODEL.ROI_BOX_HEAD.FC_DIM", "32", "INPUT.MIN_SIZE_TRAIN", "(96,)",
    "INPUT.MIN_SIZE_TEST", "96", "SOLVER.IMS_PER_BATCH", "2", "IMAGESCORE.PSEUDO_SCORE_THRESH", "0.0",
    "TEST.DETECTIONS_PER_IMAGE", "5", "SOLVER.WARMUP_ITERS", "2", "SOLVER.CHECKPOINT_PERIOD", "100",
    "IMAGESCORE.SWAP_ITER", "20", "SOLVER.MAX_ITER", "80", "SOLVER.STEPS", "(60,)", "TEST.EVAL_PERIOD", "20",
    "IMAGESCORE.SYNTHETIC.NUM_LABELLED", "4", "IMAGESCORE.SYNTHETIC.NUM_UNLABELLED", "6", "IMAGESCORE.SYNTHETIC.NUM_TEST", "2",
]


ssod_study = load_tool("ssod_study")


@pytest.fixture
def datasets(tmp_path, monkeypatch):
    """An empty DETECTRON2_DATASETS (the subprocesses inherit it); the tool generates the set there."""
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "datasets"))
    yield tmp_path / "datasets"
    register_synthetic_voc(synthetic_root())


def test_arms_continue_from_one_teacher_and_a_repeat_reruns_nothing(datasets, tmp_path):
    out = tmp_path / "study"
    argv = ["--config-file", os.path.join(REPO, "configs", "demo_ssl.yaml"), "--seeds", "0", "--arms", "control", "imagescore",
            "--data-seed", "3", "--output-dir", str(out), "--jobs", "2", *TINY]
    summary = ssod_study.main(argv)
    assert (datasets / "synthetic_voc_seed3_l4_u6_t2").is_dir()  # --data-seed: a folder of its own
    assert [row["arm"] for row in summary] == ["control", "imagescore"]
    with open(out / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    by_arm = {arm: [r for r in rows if r["arm"] == arm] for arm in ("control", "imagescore")}
    for arm_rows in by_arm.values():
        assert [int(r["iteration"]) for r in arm_rows] == [20, 40, 60, 80]
    # Up to the swap both arms report the one teacher's evaluations; only the swapping arm has pseudo labels.
    assert by_arm["control"][0]["ap50"] == by_arm["imagescore"][0]["ap50"]
    assert by_arm["control"][-1]["images"] == "" and int(by_arm["imagescore"][-1]["images"]) > 0
    with open(out / "seed0" / "imagescore" / "pseudo_labels.json") as f:
        assert json.load(f)["info"]["model"]["iteration"] == 20  # swapped at the start of the resumed run
    with open(out / "seed0" / "control" / "metrics.json") as f:
        assert min(json.loads(line)["iteration"] for line in f) >= 20  # resumed at the swap, not from scratch
    assert not (out / "seed0" / "control" / "pseudo_labels.json").exists()
    for name in ("summary.csv", "summary.md", "ap50_curves.png"):
        assert (out / name).stat().st_size > 0

    stamps = {p: p.stat().st_mtime_ns for p in out.glob("seed0/*/stdout.log")}
    assert len(stamps) == 3
    again = ssod_study.main(argv)
    assert {p: p.stat().st_mtime_ns for p in out.glob("seed0/*/stdout.log")} == stamps  # nothing trained again
    assert [a["ap50_mean"] for a in again] == [b["ap50_mean"] for b in summary]


def test_arms_are_evaluated_three_times_after_the_swap_or_refused(datasets, tmp_path):
    def period(*opts):
        return ssod_study.arm_eval_period(ssod_study.study_config(ssod_study.parse_args(
            ["--config-file", os.path.join(REPO, "configs", "demo_ssl.yaml"), "--output-dir", str(tmp_path), *TINY, *opts]))[0])

    assert period() == 20  # the config's period gives 3 evaluations after the swap
    assert period("TEST.EVAL_PERIOD", "0", "IMAGESCORE.SWAP_ITER", "40", "SOLVER.MAX_ITER", "100") == 20  # a third of 60
    assert period("TEST.EVAL_PERIOD", "300", "IMAGESCORE.SWAP_ITER", "1200", "SOLVER.MAX_ITER", "1500") == 100
    with pytest.raises(ValueError, match="TEST.EVAL_PERIOD=30 to be a multiple of 20"):
        period("TEST.EVAL_PERIOD", "0", "SOLVER.MAX_ITER", "110")
    with pytest.raises(ValueError, match="TEST.EVAL_PERIOD=40 .* divide IMAGESCORE.SWAP_ITER=20"):
        period("TEST.EVAL_PERIOD", "40", "SOLVER.MAX_ITER", "140")
