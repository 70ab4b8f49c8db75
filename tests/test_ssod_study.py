"""tools/ssod_study.py end to end on the tiny schedule: one teacher per (data seed, seed), arms from it,
resumable; the same on datasets declared only in the config; and the study's schedule checks
(imagescore_det.study.runner)."""

import csv
import json
import math

import pytest
import yaml

pytest.importorskip("detectron2")
pytestmark = pytest.mark.detectron2

from helpers import DEMO_CONFIG, TINY_DATA, TINY_OPTS, load_tool, schedule  # noqa: E402

from imagescore_det.data.convert import voc_split_to_coco  # noqa: E402
from imagescore_det.data.synthetic import SYNTHETIC_CLASSES, generate_synthetic_voc  # noqa: E402
from imagescore_det.study import runner  # noqa: E402

#: The tiny schedule of a study: swap at 4, arms to 10, evaluated after 6, 8 and 10 iterations.
STUDY = TINY_OPTS + schedule(10, swap_iter=4, eval_period=2)
ITERATIONS = [4, 6, 8, 10]

ssod_study = load_tool("ssod_study")
eval_study = load_tool("eval_study")


def read_rows(out):
    with open(out / "runs.csv") as f:
        return list(csv.DictReader(f))


def test_arms_continue_from_one_teacher_per_data_seed_and_a_repeat_reruns_nothing(
    empty_data_root, tmp_path
):
    out = tmp_path / "study"
    argv = ["--config-file", DEMO_CONFIG, "--seeds", "0", "--arms", "control", "imagescore", "--data-seeds", "3", "4",
            "--output-dir", str(out), "--jobs", "2", *STUDY]  # fmt: skip
    summary = ssod_study.main(argv)
    for data_seed in (3, 4):  # --data-seeds: each set in a folder of its own, each grid too
        sizes = dict(TINY_DATA, seed=data_seed)
        assert (
            empty_data_root
            / "synthetic_voc_seed{seed}_l{num_labelled}_u{num_unlabelled}_t{num_test}".format(
                **sizes
            )
        ).is_dir()
        with open(out / ("data%d" % data_seed) / "seed0" / "teacher" / "config.yaml") as f:
            assert yaml.safe_load(f)["IMAGESCORE"]["SYNTHETIC"]["SEED"] == data_seed
    # Pooled rows first, then one row per data seed and arm.
    assert [(row["data_seed"], row["arm"]) for row in summary] == [
        (label, arm) for label in ("pooled", 3, 4) for arm in ("control", "imagescore")
    ]
    assert [row["seeds"] for row in summary] == [2, 2, 1, 1, 1, 1]
    rows = read_rows(out)
    assert {r["data_seed"] for r in rows} == {"3", "4"}
    for data_seed in ("3", "4"):
        by_arm = {
            arm: [r for r in rows if r["arm"] == arm and r["data_seed"] == data_seed]
            for arm in ("control", "imagescore")
        }
        for arm_rows in by_arm.values():
            assert [int(r["iteration"]) for r in arm_rows] == ITERATIONS
        # Up to the swap both arms report the one teacher's evaluations; only the swapping arm has pseudo labels.
        assert by_arm["control"][0]["ap50"] == by_arm["imagescore"][0]["ap50"]
        assert by_arm["control"][-1]["images"] == "" and int(by_arm["imagescore"][-1]["images"]) > 0
    folder = out / "data3" / "seed0"
    with open(folder / "imagescore" / "pseudo_labels.json") as f:
        assert (
            json.load(f)["info"]["model"]["iteration"] == 4
        )  # swapped at the start of the resumed run
    with open(folder / "control" / "metrics.json") as f:
        assert (
            min(json.loads(line)["iteration"] for line in f) >= 4
        )  # resumed at the swap, not from scratch
    assert not (folder / "control" / "pseudo_labels.json").exists()
    with open(folder / "control" / "done.json") as f:
        assert (
            "IMAGESCORE.REGIME labelled_only" in json.load(f)["command"]
        )  # the control never swaps
    fingerprints = set()
    for done in out.glob("data*/seed0/*/done.json"):
        with open(done) as f:
            fingerprints.add(json.load(f)["fingerprint"])
    assert len(fingerprints) == 6  # each data seed's teacher and arms fingerprinted apart
    for name in ("per_seed.csv", "summary.csv", "summary.md", "ap50_curves.png"):
        assert (out / name).stat().st_size > 0
    with open(out / "per_seed.csv") as f:
        runs = list(csv.DictReader(f))
    assert [(r["arm"], r["data_seed"], r["evals"]) for r in runs] == [
        (arm, data_seed, "3") for arm in ("control", "imagescore") for data_seed in ("3", "4")
    ]  # one row per run, its final figure over the 3 evaluations after the swap
    md = (out / "summary.md").read_text()
    assert "Data seeds (IMAGESCORE.SYNTHETIC.SEED): 3, 4" in md
    assert "This study can detect differences of about ±" in md and "Evaluation noise:" in md

    stamps = {p: p.stat().st_mtime_ns for p in out.glob("data*/seed0/*/stdout.log")}
    assert len(stamps) == 6
    again = ssod_study.main(argv)
    assert {
        p: p.stat().st_mtime_ns for p in out.glob("data*/seed0/*/stdout.log")
    } == stamps  # nothing trained again
    assert [a["ap50_mean"] for a in again] == [b["ap50_mean"] for b in summary]

    # A fingerprint taken before a key was added (here: any other hash) does not retrain a run whose
    # own config.yaml holds this command's settings.
    done = folder / "teacher" / "done.json"
    record = json.loads(done.read_text())
    done.write_text(json.dumps(dict(record, fingerprint="taken by an older version")))
    # --only-finished trains nothing: data seed 5 has not run, so the tables are data seeds 3 and 4's.
    argv[argv.index("4") + 1 : argv.index("4") + 1] = ["5"]
    interim = ssod_study.main(["--only-finished"] + argv)
    assert {p: p.stat().st_mtime_ns for p in out.glob("data*/seed0/*/stdout.log")} == stamps
    assert not (out / "data5" / "seed0").exists()
    assert [a["ap50_mean"] for a in interim] == [b["ap50_mean"] for b in summary]
    assert (
        "not finished yet: data5/seed0/control, data5/seed0/imagescore"
        in (out / "summary.md").read_text()
    )


def test_a_selection_curve_runs_each_arm_at_each_fraction_from_one_teacher(
    empty_data_root, tmp_path
):
    """--fractions: imagescore at two fractions, boxfilter (every image, boxes filtered) and control once."""
    out = tmp_path / "curve"
    argv = ["--config-file", DEMO_CONFIG, "--seeds", "0", "--arms", "control", "imagescore", "boxfilter",
            "--fractions", "0.2", "0.5", "--output-dir", str(out), "--jobs", "2", *STUDY]  # fmt: skip
    summary = ssod_study.main(argv)
    assert [(row["arm"], row["fraction"]) for row in summary] == [
        ("control", ""),
        ("imagescore", 0.2),
        ("imagescore", 0.5),
        ("boxfilter", ""),
    ]
    folder = out / "seed0"
    assert sorted(p.name for p in folder.iterdir()) == [
        "boxfilter", "control", "imagescore_f0.2", "imagescore_f0.5", "teacher"
    ]  # fmt: skip
    for fraction, kept in ((0.2, 2), (0.5, 5)):  # ceil(fraction x 10 unlabelled images)
        with open(folder / ("imagescore_f%g" % fraction) / "pseudo_labels.json") as f:
            info = json.load(f)["info"]
        assert (info["select_fraction"], info["num_selected"]) == (fraction, kept)
    with open(folder / "boxfilter" / "pseudo_labels.json") as f:
        payload = json.load(f)
    info = payload["info"]
    assert info["selection"] == "box_filter" and info["score_mode"] == "box"
    assert info["num_selected"] == TINY_DATA["num_unlabelled"]  # every image, as "all"
    box_filter = info["box_filter"]
    assert box_filter["quantile"] == 0.1 and box_filter["labelled_boxes"] > 0
    assert box_filter["kept"] + box_filter["ignored"] == box_filter["pseudo_boxes"] > 0
    assert len(payload["annotations"]) == box_filter["kept"]
    rows = read_rows(out)
    assert {(r["arm"], r["fraction"]) for r in rows} == {
        ("control", ""), ("imagescore", "0.2"), ("imagescore", "0.5"), ("boxfilter", "")
    }  # fmt: skip
    assert all(r["distractors_kept"] == "" for r in rows)  # the tiny set has no kinds
    assert (out / "selection_curve.png").read_bytes().startswith(b"\x89PNG")


def test_an_uncurated_study_reuses_the_clean_studys_teacher_and_control(empty_data_root, tmp_path):
    """--reuse-from: the teacher and control read no unlabelled image, so a study on an uncurated
    pool links the clean study's in and trains only the arms that read the pool."""
    clean, uncurated = tmp_path / "clean", tmp_path / "uncurated"
    flags = ["--config-file", DEMO_CONFIG, "--seeds", "0", "--arms", "control", "imagescore", "--jobs", "1"]  # fmt: skip
    ssod_study.main(flags + ["--output-dir", str(clean), *STUDY])
    stamps = {p: p.stat().st_mtime_ns for p in clean.glob("seed0/*/stdout.log")}
    pool = ["IMAGESCORE.SYNTHETIC.DISTRACTOR_FRACTION", "0.5"]
    ssod_study.main(
        flags + ["--output-dir", str(uncurated), "--reuse-from", str(clean), *STUDY] + pool
    )
    assert {p: p.stat().st_mtime_ns for p in clean.glob("seed0/*/stdout.log")} == stamps
    for name in ("teacher", "control"):
        link = uncurated / "seed0" / name
        assert link.is_symlink() and link.resolve() == (clean / "seed0" / name).resolve()
    arm = uncurated / "seed0" / "imagescore"
    assert not arm.is_symlink() and (arm / "done.json").is_file()
    with open(arm / "config.yaml") as f:  # the arm scored the uncurated pool
        assert yaml.safe_load(f)["IMAGESCORE"]["SYNTHETIC"]["DISTRACTOR_FRACTION"] == 0.5
    md = (uncurated / "summary.md").read_text()
    assert "Linked in from --reuse-from" in md and "seed0/teacher, seed0/control" in md

    # A setting that shapes the teacher is not shared: the links go, the runs train in their own
    # folders, and the clean study's runs stay as they were.
    other = uncurated.parent / "other_lr"
    ssod_study.main(flags + ["--output-dir", str(other), "--reuse-from", str(clean), *STUDY, "SOLVER.BASE_LR", "0.002"] + pool)  # fmt: skip
    assert not (other / "seed0" / "teacher").is_symlink()
    assert (other / "seed0" / "teacher" / "stdout.log").is_file()
    assert {p: p.stat().st_mtime_ns for p in clean.glob("seed0/*/stdout.log")} == stamps


def test_one_data_seed_keeps_the_layout_and_flag_of_before(tmp_path):
    def parse(*flags):
        return ssod_study.parse_args(
            ["--config-file", DEMO_CONFIG, "--output-dir", str(tmp_path), *flags]
        )

    assert parse().data_seeds is None and runner.data_seeds_of(parse()) == [None]
    assert parse("--data-seed", "3").data_seeds == [3]  # the earlier flag still reads
    assert parse("--data-seeds", "3", "5").data_seeds == [3, 5]
    assert parse().final_evals == 3 and parse("--final-evals", "1").final_evals == 1
    with pytest.raises(SystemExit):
        parse("--final-evals", "0")
    with pytest.raises(ValueError, match="twice"):
        runner.data_seeds_of(parse("--data-seeds", "3", "3"))
    assert parse().fractions is None and parse("--fractions", "0.1", "0.5").fractions == [0.1, 0.5]
    for bad in (["0.1", "0.1"], ["0"], ["1.5"]):
        with pytest.raises(SystemExit):
            parse("--fractions", *bad)


def test_the_study_runs_on_datasets_declared_only_in_the_config(tmp_path, monkeypatch):
    """COCO-format labelled, unlabelled (with ground truth) and test sets through IMAGESCORE.REGISTER_DATASETS:
    no synthetic set, no Python registration; control, imagescore and oracle arms."""
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "no_datasets_here"))
    voc = tmp_path / "voc"
    generate_synthetic_voc(str(voc), **TINY_DATA)
    entries = []
    for name, folder, split in (("study_labelled", "VOC2007", "trainval"), ("study_unlabelled", "VOC2012", "trainval"),
                                ("study_test", "VOC2007", "test")):  # fmt: skip
        json_file = tmp_path / (name + ".json")
        json_file.write_text(
            json.dumps(voc_split_to_coco(str(voc / folder), split, SYNTHETIC_CLASSES))
        )
        entries.append("%s=coco:%s:%s" % (name, json_file, voc / folder / "JPEGImages"))
    out = tmp_path / "study"
    argv = ["--config-file", DEMO_CONFIG, "--seeds", "0", "--arms", "control", "imagescore", "oracle", "--output-dir", str(out),
            "--jobs", "2", "--metric", "ap", *STUDY, "IMAGESCORE.REGISTER_DATASETS", repr(entries), "DATASETS.TRAIN", "('study_labelled',)",
            "IMAGESCORE.LABELLED_DATASETS", "('study_labelled',)", "IMAGESCORE.UNLABELLED_DATASETS", "('study_unlabelled',)",
            "DATASETS.TEST", "('study_test',)",
            # Every image gets detections: COCOEvaluator reports NaN for a model that detects nothing at all.
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]  # fmt: skip
    summary = ssod_study.main(argv)
    assert [row["arm"] for row in summary] == ["control", "imagescore", "oracle"]
    assert not (tmp_path / "no_datasets_here").exists()  # nothing synthetic was generated
    rows = read_rows(out)
    for arm in ("control", "imagescore", "oracle"):
        arm_rows = [r for r in rows if r["arm"] == arm]
        assert [int(r["iteration"]) for r in arm_rows] == ITERATIONS, arm
        assert all(math.isfinite(float(r["ap50"])) for r in arm_rows), arm
    final = {r["arm"]: r for r in rows if int(r["iteration"]) == ITERATIONS[-1]}
    assert 0 < int(final["imagescore"]["images"]) and math.isfinite(
        float(final["imagescore"]["precision"])
    )
    assert (
        0 <= float(final["imagescore"]["precision"]) <= 1
        and final["control"]["precision"] == final["oracle"]["precision"] == ""
    )
    with open(out / "seed0" / "imagescore" / "pseudo_labels.json") as f:
        assert json.load(f)["info"]["unlabelled_datasets"] == ["study_unlabelled"]
    with open(
        out / "seed0" / "oracle" / "config.yaml"
    ) as f:  # the oracle trains on the unlabelled set's ground truth
        assert yaml.safe_load(f)["DATASETS"]["TRAIN"] == ["study_labelled", "study_unlabelled"]
    assert {row["metric"] for row in summary} == {"ap"}  # --metric ap: differences in COCO-style AP
    with open(out / "summary.csv") as f:
        assert {row["metric"] for row in csv.DictReader(f)} == {"ap"}

    # tools/eval_study.py: each arm's model_final.pth on a test set again, here the same one, under
    # its registered name: the same model on the same images gives the run's last evaluation.
    again = eval_study.main(["--study", str(out), "--dataset", "study_test", "--metric", "ap"])
    assert [row["arm"] for row in again] == ["control", "imagescore", "oracle"]
    tested = read_rows(out / "test_study_test")
    for arm in ("control", "imagescore", "oracle"):
        (last,) = [r for r in rows if r["arm"] == arm and int(r["iteration"]) == ITERATIONS[-1]]
        (ours,) = [r for r in tested if r["arm"] == arm]
        assert int(ours["iteration"]) == ITERATIONS[-1]
        assert float(ours["ap50"]) == pytest.approx(float(last["ap50"]), abs=0.05), arm
        assert float(ours["ap"]) == pytest.approx(float(last["ap"]), abs=0.05), arm
    cached = out / "seed0" / "control" / "test_study_test.json"
    before = cached.stat().st_mtime_ns
    eval_study.main(["--study", str(out), "--dataset", "study_test"])  # cached: nothing evaluated
    assert cached.stat().st_mtime_ns == before
    (out / "seed0" / "oracle" / "model_final.pth").write_bytes(b"not a checkpoint")
    cached.unlink()
    eval_study.main(["--study", str(out), "--dataset", "study_test"])
    md = (out / "test_study_test" / "summary.md").read_text()
    assert "Skipped, could not be evaluated: seed0/oracle" in md  # one bad run is reported
    assert [r["arm"] for r in read_rows(out / "test_study_test")] == ["control", "imagescore"]


def study_cfg(tmp_path, *opts):
    args = ssod_study.parse_args(
        ["--config-file", DEMO_CONFIG, "--output-dir", str(tmp_path), *STUDY, *opts]
    )
    return runner.study_config(args, (args.data_seeds or [None])[0])[0]


def test_arms_are_evaluated_three_times_after_the_swap_or_refused(empty_data_root, tmp_path):
    def period(*opts):
        return runner.arm_eval_period(study_cfg(tmp_path, *opts))

    assert period() == 2  # the config's period gives 3 evaluations after the swap
    assert (
        period("TEST.EVAL_PERIOD", "0", "IMAGESCORE.SWAP_ITER", "40", "SOLVER.MAX_ITER", "100")
        == 20
    )  # a third of 60
    assert (
        period("TEST.EVAL_PERIOD", "300", "IMAGESCORE.SWAP_ITER", "1200", "SOLVER.MAX_ITER", "1500")
        == 100
    )
    assert (
        period("TEST.EVAL_PERIOD", "0", "IMAGESCORE.SWAP_ITER", "30", "SOLVER.MAX_ITER", "75") == 15
    )  # no multiple of 20 needed
    with pytest.raises(ValueError, match="TEST.EVAL_PERIOD=3 to divide IMAGESCORE.SWAP_ITER=4"):
        period("TEST.EVAL_PERIOD", "0", "SOLVER.MAX_ITER", "13")
    with pytest.raises(ValueError, match="TEST.EVAL_PERIOD=40 .* divide IMAGESCORE.SWAP_ITER=20"):
        period("TEST.EVAL_PERIOD", "40", "IMAGESCORE.SWAP_ITER", "20", "SOLVER.MAX_ITER", "140")
    with pytest.raises(
        ValueError, match="IMAGESCORE.SWAP_ITER=10 must lie inside \\(0, SOLVER.MAX_ITER=10\\)"
    ):
        period("IMAGESCORE.SWAP_ITER", "10")
    with pytest.raises(ValueError, match="IMAGESCORE.REGIME is 'labelled_only'"):
        period("IMAGESCORE.REGIME", "labelled_only")
    with pytest.raises(ValueError, match="DATASETS.TEST is empty"):
        period("DATASETS.TEST", "()")


def test_each_arm_gets_its_own_settings_on_the_shared_ones(empty_data_root, tmp_path):
    cfg = study_cfg(tmp_path)
    shared = ["A.KEY", "1"]

    def opts(name):
        own = runner.run_opts(cfg, shared, 7, name, "/out")
        assert own[:2] == shared
        return dict(zip(own[2::2], own[3::2]))

    teacher = opts(runner.TEACHER)
    assert (
        teacher["SEED"],
        teacher["OUTPUT_DIR"],
        teacher["SOLVER.MAX_ITER"],
        teacher["TEST.EVAL_PERIOD"],
    ) == ("7", "/out", "4", "0")
    for arm in ("control", "oracle"):  # no swap: the labelled_only regime, not SWAP_ITER = MAX_ITER
        assert opts(arm)[
            "IMAGESCORE.REGIME"
        ] == "labelled_only" and "IMAGESCORE.SWAP_ITER" not in opts(arm)
    assert opts("oracle")["DATASETS.TRAIN"] == repr(
        ("synthetic_voc_2007_trainval", "synthetic_voc_2012_trainval")
    )
    for arm, selection in runner.ARMS.items():
        if selection:
            assert opts(arm)[
                "IMAGESCORE.SELECTION"
            ] == selection and "IMAGESCORE.REGIME" not in opts(arm)
            assert opts(arm)["TEST.EVAL_PERIOD"] == "2"
    modes = {arm: (opts(arm)["IMAGESCORE.SCORE_MODE"], opts(arm).get("IMAGESCORE.BOX.RANKING"))
             for arm in ("imagescore", "boxscore", "boxscore_x_confidence", "boxfilter")}  # fmt: skip
    assert modes == {"imagescore": ("image", None), "boxscore": ("box", "score"),
                     "boxscore_x_confidence": ("box", "score_x_confidence"), "boxfilter": ("box", None)}  # fmt: skip
    assert opts("boxfilter")["IMAGESCORE.SELECTION"] == "box_filter"
    at_half = runner.run_opts(cfg, [], 7, "random", "/out", 0.5)
    assert dict(zip(at_half[::2], at_half[1::2]))["IMAGESCORE.SELECT_FRACTION"] == "0.5"
    assert "IMAGESCORE.SELECT_FRACTION" not in opts("random")  # without a fraction: the config's
    # --fractions: each arm that keeps a fraction at each; every-image and no-swap arms once
    assert runner.arm_runs(["control", "imagescore", "all", "boxfilter", "random"], [0.1, 0.3]) == [
        ("control", None), ("imagescore", 0.1), ("imagescore", 0.3), ("all", None), ("boxfilter", None),
        ("random", 0.1), ("random", 0.3)]  # fmt: skip
    assert runner.arm_runs(["imagescore", "all"]) == [("imagescore", None), ("all", None)]
    assert (
        runner.run_name("imagescore", 0.1) == "imagescore_f0.1" and runner.run_name("all") == "all"
    )


def test_evaluations_come_from_the_evaluation_log(tmp_path):
    lines = [{"iteration": 4, "bbox/AP50": 10.0, "bbox/AP": 4.0, "bbox_coco/AP50": 9.0},
             {"iteration": 6, "bbox/AP50": 12.0, "bbox/AP": 5.0},
             {"iteration": 6, "bbox/AP50": 13.0, "bbox/AP": 6.0}]  # fmt: skip
    (tmp_path / "evaluations.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert runner.evaluations(str(tmp_path)) == {
        4: (10.0, 4.0, 9.0),
        6: (13.0, 6.0, None),
    }  # a later line wins


def test_a_finished_run_is_judged_by_its_own_config_where_keys_were_added_since(tmp_path):
    """A run whose config.yaml lacks a key the project added since trained as the current config does
    while that key is at its default; any other difference counts."""
    from imagescore_det.config import build_config

    cfg = build_config(DEMO_CONFIG, ["IMAGESCORE.SYNTHETIC.SEED", "7", "OUTPUT_DIR", "/a/run"])
    ran = yaml.safe_load(cfg.dump())
    del ran["IMAGESCORE"]["SYNTHETIC"]["DISTRACTOR_FRACTION"]  # as written before the key existed
    ran["OUTPUT_DIR"] = "/another/folder"  # where it ran does not shape it
    saved = tmp_path / "config.yaml"

    def changed(current, saved_config=ran):
        saved.write_text(yaml.safe_dump(saved_config))
        return runner.changed_settings(str(saved), current)

    assert changed(cfg) == []
    moved = build_config(DEMO_CONFIG, ["IMAGESCORE.SYNTHETIC.SEED", "7", "IMAGESCORE.SYNTHETIC.DISTRACTOR_FRACTION", "0.5"])  # fmt: skip
    assert changed(moved) == ["IMAGESCORE.SYNTHETIC.DISTRACTOR_FRACTION"]
    assert changed(build_config(DEMO_CONFIG, ["IMAGESCORE.SYNTHETIC.SEED", "8"])) == [
        "IMAGESCORE.SYNTHETIC.SEED"
    ]
    removed = dict(ran, OLD_KEY=1)  # a key the project has dropped since
    assert changed(cfg, removed) == ["OLD_KEY"]
