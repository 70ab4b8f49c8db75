"""The whole detection pipeline on tiny synthetic data with real Detectron2, on CPU.

One short demo training (8 iterations, swap at 4) is shared by the tests that read its outputs;
resuming, the standalone scoring tool and a two-process scoring run each add a few seconds.
"""

import json
import os
import re

import pytest
import torch

pytest.importorskip("detectron2")
pytestmark = pytest.mark.detectron2

from detectron2.config import get_cfg  # noqa: E402
from helpers import (  # noqa: E402
    DEMO_CONFIG,
    REPO,
    TINY_DATA,
    TINY_OPTS,
    load_tool,
    spawn_with_this_process_threads,
    train_args,
)
from pycocotools.coco import COCO  # noqa: E402

from imagescore_det import add_imagescore_config  # noqa: E402
from imagescore_det.engine import ImageScoreTrainer, setup  # noqa: E402
from imagescore_det.scoring import ClassReferences, Reference  # noqa: E402

train_net = load_tool("train_net")
score_voc = load_tool("score_voc")


def parse_score_voc(argv):
    return score_voc.argument_parser().parse_args(argv)


@pytest.fixture(scope="module")
def demo_run(data_root, tmp_path_factory):
    """tools/train_net.py's main(): 8 iterations, swap at 4; returns its output folder."""
    output_dir = tmp_path_factory.mktemp("demo_run")
    train_net.main(train_args(output_dir, 8))
    return str(output_dir)


def test_training_swaps_at_iteration_4_and_logs_each_step(demo_run):
    with open(os.path.join(demo_run, "log.txt")) as f:
        log = f.read()
    assert "Built the reference from 6 images of synthetic_voc_2007_trainval" in log
    assert "Scored 10 images of synthetic_voc_2012_trainval" in log
    assert "Kept 3 of 10 scored images (image_score, top 0.3, ceil)" in log
    assert (
        "Swapped the training loader at iteration 4: it now reads "
        "synthetic_voc_2007_trainval + imagescore_pseudo_labels (3 pseudo-labelled images, zipped, PSEUDO_RATIO 1)"
    ) in log
    with open(os.path.join(demo_run, "metrics.json")) as f:
        metrics = [json.loads(line) for line in f if '"iteration"' in line]
    after_swap = [m for m in metrics if m["iteration"] >= 4 and "loss_cls" in m]
    assert after_swap and all(
        "loss_pseudo_cls" in m for m in after_swap
    )  # pseudo images in every batch
    assert re.search(r"AP50 on synthetic_voc_2007_test before the swap \(iteration 4\): \d", log)
    assert re.search(r"AP50 on synthetic_voc_2007_test at the end \(iteration 8\): \d", log)

    coco = COCO(os.path.join(demo_run, "pseudo_labels.json"))
    assert len(coco.getImgIds()) == 3 and len(coco.getAnnIds()) > 0
    info = coco.dataset["info"]
    assert (
        info["num_scored"] == 10
        and info["select_fraction"] == 0.3
        and info["model"]["iteration"] == 4
    )
    assert info["reference_file"] == os.path.join(demo_run, "imagescore_reference.pt")
    assert [c["name"] for c in coco.dataset["categories"]][:2] == ["red_square", "green_circle"]
    for image in coco.dataset["images"]:
        assert os.path.isfile(os.path.join(info["image_root"], image["file_name"]))
    with open(os.path.join(demo_run, "image_scores.csv")) as f:
        rows = f.read().splitlines()
    assert len(rows) == 11 and sum(line.split(",")[4] == "1" for line in rows[1:]) == 3
    for name in ("image_scores_histogram.png", "selection_gallery.png"):
        with open(os.path.join(demo_run, name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_resume_after_the_swap_trains_on_pseudo_labels_without_scoring(data_root, tmp_path):
    first = ImageScoreTrainer(setup(train_args(tmp_path, 6), training=True))
    first.resume_or_load(resume=False)
    first.train()  # swaps after iteration 4; model_final.pth (iteration 5) records the swap
    assert first.swap_hook.scoring_runs == 1
    json_file = os.path.join(tmp_path, "pseudo_labels.json")
    with open(json_file) as f:
        written = f.read()

    resumed = ImageScoreTrainer(setup(train_args(tmp_path, 8, "--resume"), training=True))
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 6 and resumed.swap_hook.swap_iter == 4
    resumed.train()
    assert resumed.swap_hook.scoring_runs == 0
    with open(json_file) as f:
        assert f.read() == written
    # The rebuilt loader serves the pseudo-labelled (VOC2012) images as well as the labelled ones.
    seen = [
        record["file_name"] for _, batch in zip(range(12), resumed.data_loader) for record in batch
    ]
    selected = {image["file_name"] for image in json.loads(written)["images"]}
    assert any(os.path.basename(name) in selected for name in seen)
    assert any("VOC2007" in name for name in seen)


def score_voc_argv(demo_run, output_dir, *extra):
    return [
        "--config-file",
        DEMO_CONFIG,
        "--weights",
        os.path.join(demo_run, "model_final.pth"),
        "--output-dir",
        str(output_dir),
        *extra,
        *TINY_OPTS,
    ]


def test_score_voc_keeps_ceil_of_30_percent_and_compares_strategies(demo_run, tmp_path, capsys):
    out = str(tmp_path / "scored")
    result = score_voc.main(parse_score_voc(score_voc_argv(demo_run, out)))
    assert result["written"]["num_selected"] == 3  # ceil(0.3 x 10) on the decimal value: 3, not 4
    assert COCO(os.path.join(out, "pseudo_labels.json")).dataset["info"]["num_selected"] == 3
    for name in (
        "image_scores.csv",
        "image_scores_histogram.png",
        "selection_gallery.png",
        "imagescore_reference.pt",
        "selection_quality.md",
    ):
        assert os.path.getsize(os.path.join(out, name)) > 0
    assert [row["strategy"] for row in result["table"]] == [
        "image_score",
        "box_score_min",
        "box_score_mean",
        "confidence",
        "score_x_confidence_min",
        "score_x_confidence_mean",
        "random",
        "all",
    ]
    assert (
        all(row["images"] == 3 for row in result["table"][:-1])
        and result["table"][-1]["images"] == 10
    )
    assert [row["signal"] for row in result["box_auroc"]] == [
        "box_score",
        "confidence",
        "score_x_confidence",
    ]
    printed = capsys.readouterr().out
    assert (
        "Kept 3 of 10 scored images" in printed
        and "| image_score | 3 |" in printed
        and "| box_score |" in printed
    )


def test_box_mode_through_the_config_alone(demo_run, data_root, tmp_path, capsys):
    """SCORE_MODE box: the swap hook and the tool select by box score; --weights A B averages two teachers."""
    train_net.main(
        train_args(
            tmp_path / "train",
            5,
            "IMAGESCORE.SCORE_MODE",
            "box",
            "IMAGESCORE.BOX.AGGREGATE",
            "mean",
        )
    )
    with open(tmp_path / "train" / "log.txt") as f:
        log = f.read()
    # Box mode alone ran (one mode in the passes), from per-class references of the labelled set.
    assert "Scored 10 images of synthetic_voc_2012_trainval (modes ['box']," in log
    assert "Built per-class box references from synthetic_voc_2007_trainval: " in log
    assert "Swapped the training loader at iteration 4" in log
    info = COCO(str(tmp_path / "train" / "pseudo_labels.json")).dataset["info"]
    assert (
        info["score_mode"] == "box"
        and info["box"]["aggregate"] == "mean"
        and info["box"]["ranking"] == "score"
    )
    references = ClassReferences.load(
        str(tmp_path / "train" / "imagescore_reference.pt"), mode="box"
    )
    assert references.class_names[:2] == ["red_square", "green_circle"]

    weights = os.path.join(demo_run, "model_final.pth")
    argv = score_voc_argv(
        demo_run,
        tmp_path / "scored",
        "IMAGESCORE.SCORE_MODE",
        "box",
        "IMAGESCORE.BOX.RANKING",
        "score_x_confidence",
    )
    argv[argv.index("--weights") + 1 : argv.index("--weights") + 2] = [weights, weights]
    result = score_voc.main(parse_score_voc(argv))
    first, second = result["teachers"]
    assert (
        str(first["table"]) == str(second["table"]) and first["written"]["num_selected"] == 3
    )  # str: NaN == NaN
    summary = {row["strategy"]: row for row in result["summary"]["table"]}
    row = summary["box_score_min"]
    assert (row["n"], row["images_mean"], row["images_sd"]) == (
        2,
        3.0,
        0.0,
    )  # the same teacher twice: no spread
    for name in (
        "selection_quality_over_teachers.md",
        "box_auroc_over_teachers.csv",
        "teacher1/box_auroc.md",
    ):
        assert os.path.getsize(tmp_path / "scored" / name) > 0


def test_less_confident_detections_become_ignore_boxes(demo_run, tmp_path):
    out = str(tmp_path / "scored")
    band = [
        "IMAGESCORE.PSEUDO_SCORE_THRESH",
        "0.9",
        "IMAGESCORE.PSEUDO_TRAINING.IGNORE_SCORE_THRESH",
        "0.0",
        "IMAGESCORE.KEEP_EMPTY",
        "True",
    ]
    score_voc.main(parse_score_voc(score_voc_argv(demo_run, out) + band))
    coco = COCO(os.path.join(out, "pseudo_labels.json"))
    images = coco.dataset["images"]
    assert len(images) == 3 and sum(len(image["ignore_boxes"]) for image in images) > 0
    assert all(annotation["score"] >= 0.9 for annotation in coco.dataset["annotations"])
    for image in (
        images
    ):  # the detections split between pseudo labels and ignore boxes (XYXY, inside the image)
        assert (
            len(image["ignore_boxes"]) + len(coco.getAnnIds(imgIds=[image["id"]])) <= 5
        )  # TEST.DETECTIONS_PER_IMAGE
        for x0, y0, x1, y1 in image["ignore_boxes"]:
            assert 0 <= x0 <= x1 <= image["width"] and 0 <= y0 <= y1 <= image["height"]


@pytest.mark.parametrize("strategy, kept", [("confidence", 3), ("random", 3), ("all", 10)])
def test_selection_strategy_decides_which_images_the_swap_keeps(demo_run, tmp_path, strategy, kept):
    """IMAGESCORE.SELECTION picks the kept images; the strategy's own row of the comparison keeps the same ones."""
    out = str(tmp_path / strategy)
    result = score_voc.main(
        parse_score_voc(
            score_voc_argv(
                demo_run, out, "--seed", "5", "IMAGESCORE.SELECTION", strategy, "SEED", "5"
            )
        )
    )
    info = COCO(os.path.join(out, "pseudo_labels.json")).dataset["info"]
    assert result["written"]["num_selected"] == info["num_selected"] == kept
    assert info["selection"] == strategy and info["selection_seed"] == (
        5 if strategy == "random" else None
    )
    with open(os.path.join(out, "image_scores.csv")) as f:
        selected = {
            line.split(",")[0] for line in f.read().splitlines()[1:] if line.split(",")[4] == "1"
        }
    row = next(row for row in result["table"] if row["strategy"] == strategy)
    assert len(selected) == row["images"] == kept


def test_unknown_selection_or_unseeded_random_is_refused_before_training(data_root, tmp_path):
    with pytest.raises(ValueError, match="IMAGESCORE.SELECTION is 'softmax'"):
        ImageScoreTrainer(
            setup(train_args(tmp_path, 8, "IMAGESCORE.SELECTION", "softmax"), training=True)
        )
    with pytest.raises(ValueError, match="cfg.SEED, which is -1"):
        ImageScoreTrainer(
            setup(
                train_args(tmp_path, 8, "IMAGESCORE.SELECTION", "random", "SEED", "-1"),
                training=True,
            )
        )


def test_labelled_only_regime_trains_without_ever_swapping(data_root, tmp_path):
    """IMAGESCORE.REGIME labelled_only (the control): no swap hook, no scoring, no pseudo labels."""
    trainer = ImageScoreTrainer(
        setup(train_args(tmp_path, 6, "IMAGESCORE.REGIME", "labelled_only"), training=True)
    )
    assert trainer.swap_hook is None
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert (
        trainer.iter == 6 and trainer.data_loader.pseudo is None
    )  # 6 iterations done, past SWAP_ITER 4
    assert not os.path.exists(tmp_path / "pseudo_labels.json") and not os.path.exists(
        tmp_path / "image_scores.csv"
    )
    with open(tmp_path / "log.txt") as f:
        log = f.read()
    assert "Swapped the training loader" not in log and "Scored " not in log
    with open(tmp_path / "metrics.json") as f:
        metrics = [json.loads(line) for line in f if '"loss_cls"' in line]
    assert metrics and not any("loss_pseudo_cls" in m for m in metrics)
    # The one evaluation (EvalHook at the end) is in the evaluation log, with the iterations done.
    with open(tmp_path / "evaluations.jsonl") as f:
        (evaluation,) = [json.loads(line) for line in f]
    assert evaluation["iteration"] == 6 and 0 <= evaluation["bbox/AP50"] <= 100


def test_unknown_regime_fails_before_iteration_0_naming_the_key(data_root, tmp_path):
    args = train_args(tmp_path, 6, "IMAGESCORE.REGIME", "sometimes")
    with pytest.raises(ValueError, match="IMAGESCORE.REGIME is 'sometimes'"):
        setup(args, training=True)  # the config check, before anything is written
    assert os.listdir(tmp_path) == []
    cfg = setup(train_args(tmp_path, 6), training=True).clone()
    cfg.defrost()
    cfg.IMAGESCORE.REGIME = "sometimes"  # past the tools' check: the trainer refuses it too
    with pytest.raises(ValueError, match="IMAGESCORE.REGIME is 'sometimes'"):
        ImageScoreTrainer(cfg)
    assert not any(name.endswith(".pth") for name in os.listdir(tmp_path)) and not os.path.exists(
        tmp_path / "metrics.json"
    )


def test_score_voc_help_documents_every_flag(capsys):
    """Detectron2's own flags (its default_argument_parser) and the tool's, each with its help."""
    with pytest.raises(SystemExit):
        parse_score_voc(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for usage in (
        "--config-file FILE path to config file",
        "--num-gpus NUM_GPUS number of gpus",
        "--dist-url DIST_URL initialization URL",
        "--weights FILE [FILE ...] detector checkpoint(s) to score with",
        "--output-dir DIR where the files go",
        "--seed SEED seed of the random strategy",
        "opts Modify config options",
        "-h, --help show this help",
    ):
        assert usage in text, usage


def test_two_processes_score_select_and_write_like_one(demo_run, tmp_path, monkeypatch):
    """tools/score_voc.py through Detectron2's launch (gloo on CPU): same scores, selection and JSON."""
    monkeypatch.syspath_prepend(
        os.path.join(REPO, "tools")
    )  # the spawned ranks import the tool by name
    spawn_with_this_process_threads(monkeypatch)
    one, two = tmp_path / "one", tmp_path / "two"
    score_voc.main(parse_score_voc(score_voc_argv(demo_run, one)))
    # A file rendezvous: no TCP port for concurrent jobs on the machine to race for.
    score_voc.invoke_main(
        score_voc_argv(
            demo_run, two, "--num-gpus", "2", "--dist-url", "file://" + str(tmp_path / "rendezvous")
        )
    )

    with open(one / "image_scores.csv") as a, open(two / "image_scores.csv") as b:
        assert (
            a.read() == b.read()
        )  # ids, files, scores, per-layer terms, ranks, selection: bit for bit

    def without_run_details(path):
        with open(path) as f:
            payload = json.load(f)
        for key in ("date_created", "reference_file"):
            payload["info"].pop(key)
        return payload

    assert without_run_details(one / "pseudo_labels.json") == without_run_details(
        two / "pseudo_labels.json"
    )
    reference_one, reference_two = (
        Reference.load(str(one / "imagescore_reference.pt")),
        Reference.load(str(two / "imagescore_reference.pt")),
    )
    assert (
        reference_two.metadata["num_images"]
        == reference_one.metadata["num_images"]
        == TINY_DATA["num_labelled"]
    )
    for name, mean in reference_one.mean.items():
        assert torch.allclose(reference_two.mean[name], mean, rtol=0, atol=1e-12)
        assert torch.equal(
            reference_two.masks.get(name, torch.tensor([])),
            reference_one.masks.get(name, torch.tensor([])),
        )


@pytest.mark.parametrize(
    "filename, backbone, labelled, swap_iter, max_iter",
    [
        ("voc_ssl.yaml", "build_vgg16_backbone", "voc_2007_trainval", 60000, 70000),
        ("voc_ssl_R50.yaml", "build_resnet_backbone", "voc_2007_trainval", 60000, 70000),
        ("demo_ssl.yaml", "build_vgg16_backbone", "synthetic_voc_2007_trainval", 2400, 3000),
    ],
)
def test_configs_load_with_the_paper_settings(filename, backbone, labelled, swap_iter, max_iter):
    cfg = get_cfg()
    add_imagescore_config(cfg)
    cfg.merge_from_file(os.path.join(REPO, "configs", filename))
    assert (
        cfg.MODEL.BACKBONE.NAME == "build_imagescore_backbone"
        and cfg.IMAGESCORE.WRAPPED_BACKBONE == backbone
    )
    assert cfg.IMAGESCORE.LABELLED_DATASETS == (labelled,) and cfg.DATASETS.TRAIN == (labelled,)
    assert (cfg.IMAGESCORE.SWAP_ITER, cfg.SOLVER.MAX_ITER, cfg.IMAGESCORE.SELECT_FRACTION) == (
        swap_iter,
        max_iter,
        0.3,
    )
    assert cfg.MODEL.WEIGHTS == ""  # nothing is downloaded
