"""End to end on digits with a one-epoch schedule: runs, assembly, reports, and the command line."""

import csv
import os
import re
import shutil
import subprocess
import sys

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from imagescore_det.classification import (
    assemble_predictions,
    load_classification_config,
    run_experiment,
    run_seed,
    variants_for,
)
from imagescore_det.reports.classification import resummarize, write_classification_report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGITS = os.path.join(REPO, "configs", "classification", "digits.yaml")
QUICK = [
    "SOLVER.EPOCHS_LABELLED",
    "1",
    "SOLVER.EPOCHS_ADDITIONAL",
    "1",
    "SIGNIFICANCE.RESAMPLES",
    "200",
]
TOOL = os.path.join(REPO, "tools", "train_classifier.py")


def quick_cfg(*extra):
    return load_classification_config(DIGITS, QUICK + list(extra))


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    output = str(tmp_path_factory.mktemp("digits"))
    cfg = quick_cfg()
    split = run_experiment(
        cfg, ["baseline", "softmax", "imagescore", "assemble"], [0, 1], output, progress=False
    )
    yield cfg, split, output
    torch.set_num_threads(threads)  # later modules keep the session's thread count


def load(output, seed, variant):
    with np.load(os.path.join(output, "runs", "seed%d" % seed, variant + ".npz")) as archive:
        return dict(archive)


def test_variants_cover_assembly_without_repeats():
    assert variants_for(["assemble", "baseline"], 3) == [
        "baseline",
        "boost0",
        "boost1",
        "boost2",
        "assemble",
    ]
    with pytest.raises(ValueError, match="mode"):
        variants_for(["bagging"], 3)


def test_every_variant_is_written_and_assembly_follows_the_boosted_models(experiment):
    cfg, split, output = experiment
    for seed in (0, 1):
        baseline = load(output, seed, "baseline")
        assert len(baseline["selected_count"]) == 0
        assert (
            len(load(output, seed, "imagescore")["selected_count"]) == cfg.SOLVER.EPOCHS_ADDITIONAL
        )
        boosted = [load(output, seed, "boost%d" % k) for k in range(split.num_classes)]
        assembled = load(output, seed, "assemble")
        expected = assemble_predictions(
            np.stack([b["test_pred"] for b in boosted]),
            np.stack([b["test_score"] for b in boosted]),
            baseline["test_pred"],
        )
        assert np.array_equal(assembled["test_pred"], expected)
        assert np.array_equal(assembled["base_pred"], baseline["test_pred"])
        # Phase 2 starts from one state, so in its first epoch model k adds exactly image-score
        # training's class-k share: the boosted models' counts add up to image-score training's.
        imagescore = load(output, seed, "imagescore")
        for key in ("selected_count", "selected_correct"):
            assert sum(int(b[key][0]) for b in boosted) == int(imagescore[key][0]) > 0
    assert not np.array_equal(
        load(output, 0, "baseline")["test_pred"], load(output, 1, "baseline")["test_pred"]
    )


def test_each_mode_continues_from_the_same_labelled_phase(experiment, tmp_path):
    """Softmax trained alone equals softmax trained after other variants: every variant restarts from one state."""
    cfg, split, output = experiment
    alone = run_seed(
        cfg, split, 0, ["softmax"], str(tmp_path), device=torch.device("cpu"), progress=False
    )["softmax"]
    together = load(output, 0, "softmax")
    for key in ("test_pred", "test_score", "test_confidence", "selected_count", "selected_correct"):
        assert np.array_equal(alone[key], together[key]), key


def test_report_writes_the_table_figure_and_auroc(experiment, tmp_path):
    cfg, split, output = experiment
    written = write_classification_report(output, str(tmp_path), split.class_names, cfg)
    assert {os.path.basename(p) for p in written} >= {
        "per_class.csv",
        "vs_softmax.csv",
        "assembly.csv",
        "auroc.csv",
        "score_intervals.png",
        "report.md",
    }
    with open(tmp_path / "per_class.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["class"] for r in rows] == split.class_names + ["mean"]
    assert set(rows[0]) >= {
        "baseline",
        "imagescore",
        "imagescore - baseline",
        "p(imagescore)",
        "softmax",
        "p(softmax)",
        "imagescore - softmax",
    }
    for row in rows:
        assert float(row["imagescore - baseline"]) == pytest.approx(
            float(row["imagescore"]) - float(row["baseline"])
        )
        assert 0.0 <= float(row["p(softmax)"]) <= 1.0
    mean = rows[-1]
    assert float(mean["baseline"]) == pytest.approx(
        np.mean([float(r["baseline"]) for r in rows[:-1]])
    )
    with open(tmp_path / "seeds.csv") as f:
        seeds = list(csv.DictReader(f))
    assert [r["seed"] for r in seeds] == ["0", "1", "mean", "sd"]
    assert set(seeds[0]) == {"seed", "baseline", "softmax", "imagescore", "assemble"}
    accuracy = np.mean(
        load(output, 1, "assemble")["test_pred"] == load(output, 1, "assemble")["test_labels"]
    )
    assert float(seeds[1]["assemble"]) == pytest.approx(accuracy)
    assert float(seeds[2]["assemble"]) == pytest.approx(
        (float(seeds[0]["assemble"]) + accuracy) / 2
    )
    with open(tmp_path / "auroc.csv") as f:
        auroc = list(csv.DictReader(f))
    assert [r["mode"] for r in auroc] == ["baseline", "softmax", "imagescore"]
    assert all(0.0 <= float(r["image score (mean)"]) <= 1.0 for r in auroc)
    with open(tmp_path / "score_intervals.csv") as f:
        intervals = [r for r in csv.DictReader(f) if r["mode"] == "imagescore"]
    for part, size in (("training", len(split.labelled)), ("test", len(split.test))):
        assert (
            sum(int(r["images"]) for r in intervals if r["part"] == part) == 2 * size
        )  # two seeds pooled
    assert max(float(r["high"]) for r in intervals) <= 0.0  # overlap scores lie in (-inf, 0]
    image = plt.imread(str(tmp_path / "score_intervals.png"))
    assert image.shape[0] > 200 and image.shape[1] > 600
    report = (tmp_path / "report.md").read_text()
    assert (
        "| mean |" in report and "score_intervals.png" in report and "claimed by no model" in report
    )
    # the summaries from the committed per-seed CSVs alone are the report's own
    before = {p: open(p, "rb").read() for p in written if not p.endswith(".png")}
    assert set(resummarize(str(tmp_path))) <= set(before)
    assert {p: open(p, "rb").read() for p in before} == before


def test_report_names_a_truncated_run_file(experiment, tmp_path):
    cfg, split, output = experiment
    damaged = str(tmp_path / "damaged")
    shutil.copytree(output, damaged)
    path = os.path.join(damaged, "runs", "seed1", "softmax.npz")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(ValueError, match=r"%s is damaged.*seed 1" % re.escape(path)):
        write_classification_report(damaged, str(tmp_path / "report"), split.class_names, cfg)


def test_output_folder_refuses_runs_of_another_config(experiment):
    _, _, output = experiment
    with pytest.raises(ValueError, match="another config"):
        run_experiment(
            quick_cfg("SOLVER.BASE_LR", "0.01"), ["baseline"], [0], output, progress=False
        )


def test_help_documents_every_flag():
    result = subprocess.run(
        [sys.executable, TOOL, "--help"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=REPO),
    )
    assert result.returncode == 0, result.stderr
    for flag in (
        "--config-file",
        "--mode",
        "--seeds",
        "--output-dir",
        "--report-dir",
        "--num-threads",
        "--no-progress",
        "--report-only",
        "KEY VALUE",
    ):
        assert flag in result.stdout
    assert "baseline" in result.stdout and "assemble" in result.stdout


def test_command_line_runs_without_detectron2(tmp_path):
    """The tool end to end, with every import of Detectron2 made to fail."""
    argv = [
        TOOL,
        "--config-file",
        DIGITS,
        "--mode",
        "baseline",
        "imagescore",
        "--seeds",
        "3",
        "--output-dir",
        str(tmp_path / "out"),
        "--report-dir",
        str(tmp_path / "report"),
        "--num-threads",
        "1",
        "--no-progress",
        *QUICK,
    ]
    code = (
        "import runpy, sys; sys.modules['detectron2'] = None; sys.argv = %r; runpy.run_path(%r, run_name='__main__')"
        % (argv, TOOL)
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=REPO),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "report" / "report.md").exists() and (
        tmp_path / "out" / "runs" / "seed3" / "imagescore.npz"
    ).exists()
    assert (tmp_path / "report" / "per_class.csv").read_text().count(
        "\n"
    ) == 12  # header, 10 digits, mean
    run_file = tmp_path / "out" / "runs" / "seed3" / "imagescore.npz"
    before = run_file.stat().st_mtime_ns
    argv[argv.index(str(tmp_path / "report"))] = str(tmp_path / "again")
    code = "import sys, runpy; sys.argv = %r; runpy.run_path(%r, run_name='__main__')" % (
        argv[:1] + ["--report-only"] + argv[1:],
        TOOL,
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=REPO),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert run_file.stat().st_mtime_ns == before  # nothing trained again
    assert (tmp_path / "again" / "per_class.csv").read_text() == (
        tmp_path / "report" / "per_class.csv"
    ).read_text()
