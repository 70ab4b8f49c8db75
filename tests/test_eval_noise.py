"""The evaluation-noise measure: the NumPy VOC AP50 (imagescore_det.evaluation.noise) against hand
computation and Detectron2's own voc_eval / voc_ap, its bootstrap sd on hand-made detections, and
tools/eval_noise.py end to end on the tiny set against Detectron2's VOC evaluator."""

import json
import math
import os

import numpy as np
import pytest
from helpers import DEMO_CONFIG, TINY_DATA, TINY_OPTS, load_tool, schedule, train_args

from imagescore_det.evaluation.noise import bootstrap_ap50, bootstrap_paired_ap50, voc_ap, voc_ap50


def image(boxes, classes, difficult=None):
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    difficult = [False] * len(classes) if difficult is None else difficult
    return boxes, np.asarray(classes, dtype=np.int64), np.asarray(difficult, dtype=bool)


def dets(boxes, scores, classes):
    return (
        np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        np.asarray(scores, dtype=np.float64),
        np.asarray(classes, dtype=np.int64),
    )


#: Two images, two classes; in "a" one class-0 box is difficult.
TRUTH = {
    "a": image([[1, 1, 10, 10], [21, 21, 30, 30], [1, 1, 10, 10]], [0, 0, 1], [False, True, False]),
    "b": image([[1, 1, 10, 10]], [0]),
}
DETECTIONS = {
    # class 0: a hit (0.9), one on the difficult box (0.8: neither), a duplicate (0.7: false); class 1: a miss
    "a": dets(
        [[1, 1, 10, 10], [21, 21, 30, 30], [1, 1, 10, 10], [50, 50, 60, 60]],
        [0.9, 0.8, 0.7, 0.6],
        [0, 0, 0, 1],
    ),  # fmt: skip
    "b": dets([[2, 1, 10, 10]], [0.5], [0]),  # IoU 90 / 100 with b's box: a hit
}


def test_voc_ap50_equals_the_hand_computation():
    # class 0: npos 2; in score order TP, (difficult), FP, TP: recall .5 .5 .5 1, precision 1 1 .5 2/3
    # 11-point: six thresholds 0-0.5 at precision 1, five 0.6-1 at 2/3 -> 28/33; area: .5 * 1 + .5 * 2/3
    # class 1: one false positive, recall 0 -> AP 0
    assert voc_ap50(DETECTIONS, TRUTH, use_07_metric=True) == pytest.approx(
        100 * 28 / 33 / 2, rel=1e-12
    )
    assert voc_ap50(DETECTIONS, TRUTH, use_07_metric=False) == pytest.approx(
        100 * 5 / 6 / 2, rel=1e-12
    )
    # A third class with neither boxes nor detections counts 0 in the mean, as in Detectron2.
    assert voc_ap50(DETECTIONS, TRUTH, num_classes=3) == pytest.approx(100 * 28 / 33 / 3, rel=1e-12)
    # Without the difficult flag the 0.8 detection is a hit: TP TP FP TP over 3 boxes.
    plain = dict(TRUTH, a=image(TRUTH["a"][0], TRUTH["a"][1]))
    rec, prec = np.array([1, 2, 2, 3]) / 3, np.array([1, 1, 2 / 3, 3 / 4])
    assert voc_ap50(DETECTIONS, plain, use_07_metric=False) == pytest.approx(
        100 * (2 / 3 * 1 + 1 / 3 * 3 / 4) / 2
    )
    assert voc_ap(rec, prec) == pytest.approx(2 / 3 + 1 / 4)
    with pytest.raises(KeyError, match="'c'"):
        voc_ap50(dict(DETECTIONS, c=DETECTIONS["b"]), TRUTH)


@pytest.mark.detectron2
def test_voc_ap_and_voc_eval_are_detectron2s(tmp_path):
    """On a random set with difficult boxes, duplicates and misses, written to the VOC files that
    Detectron2's voc_eval reads: the same AP per class, both metrics."""
    pytest.importorskip("detectron2")
    from detectron2.evaluation import pascal_voc_evaluation as d2

    rng = np.random.default_rng(5)
    for _ in range(20):
        rec = np.sort(rng.uniform(0, 1, 12))
        prec = rng.uniform(0, 1, 12)
        for metric in (True, False):
            assert voc_ap(rec, prec, metric) == d2.voc_ap(rec, prec, metric)

    names = ["c0", "c1", "c2"]
    truth, detections, lines = {}, {}, {c: [] for c in names}
    (tmp_path / "ann").mkdir()
    for k in range(15):
        image_id = "im%02d" % k
        count = int(rng.integers(0, 5))
        x1, y1 = rng.integers(1, 60, count), rng.integers(1, 60, count)
        w, h = rng.integers(8, 40, count), rng.integers(8, 40, count)
        gt = np.stack([x1, y1, x1 + w, y1 + h], axis=1).astype(np.float64).reshape(-1, 4)
        classes = rng.integers(0, 3, count)
        difficult = rng.random(count) < 0.2
        truth[image_id] = (gt, classes, difficult)
        objects = "".join(
            "<object><name>%s</name><pose>x</pose><truncated>0</truncated><difficult>%d</difficult>"
            "<bndbox><xmin>%d</xmin><ymin>%d</ymin><xmax>%d</xmax><ymax>%d</ymax></bndbox></object>"
            % (names[c], d, *box)
            for box, c, d in zip(gt.astype(int), classes, difficult)
        )
        (tmp_path / "ann" / (image_id + ".xml")).write_text("<annotation>%s</annotation>" % objects)
        boxes = [gt + rng.normal(0, 3, gt.shape), gt[:1], rng.uniform(1, 90, (2, 4))]
        boxes = np.round(np.concatenate(boxes).reshape(-1, 4), 1)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        det_classes = np.concatenate([classes, classes[:1], rng.integers(0, 3, 2)]).astype(np.int64)
        scores = np.round(rng.uniform(0, 1, len(boxes)), 3)
        detections[image_id] = (boxes, scores, det_classes)
        for box, score, c in zip(boxes, scores, det_classes):
            lines[names[c]].append("%s %.3f %.1f %.1f %.1f %.1f" % (image_id, score, *box))
    (tmp_path / "set.txt").write_text("\n".join(truth) + "\n")
    for c in names:
        (tmp_path / (c + ".txt")).write_text("\n".join(lines[c]))
    for metric in (True, False):
        expected = np.mean(
            [
                d2.voc_eval(
                    str(tmp_path / "{}.txt"),
                    str(tmp_path / "ann" / "{}.xml"),
                    str(tmp_path / "set.txt"),
                    c,
                    ovthresh=0.5,
                    use_07_metric=metric,
                )[2]
                * 100
                for c in names
            ]
        )
        assert 0 < expected < 100
        assert voc_ap50(detections, truth, num_classes=3, use_07_metric=metric) == pytest.approx(
            expected, abs=1e-9
        )


def test_the_bootstrap_sd_is_zero_on_identical_images_and_repeatable_otherwise():
    same = {k: TRUTH["a"] for k in range(6)}
    same_dets = {k: DETECTIONS["a"] for k in range(6)}
    ap50, sd = bootstrap_ap50(same_dets, same, resamples=200, seed=0)
    assert ap50 == pytest.approx(voc_ap50(same_dets, same)) and sd == 0.0

    ap50, sd = bootstrap_ap50(DETECTIONS, TRUTH, resamples=200, seed=0)
    assert ap50 == voc_ap50(DETECTIONS, TRUTH) and sd > 0
    assert bootstrap_ap50(DETECTIONS, TRUTH, resamples=200, seed=0) == (ap50, sd)
    assert bootstrap_ap50(DETECTIONS, TRUTH, resamples=200, seed=1)[1] != sd
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_ap50(DETECTIONS, TRUTH, resamples=1)


def random_set(noise: float, seed: int = 3):
    """12 test images of 3 boxes each (2 classes, some difficult) and one model's detections on them:
    the boxes jittered by ``noise`` px and 2 false positives per image, no two scores equal."""
    rng = np.random.default_rng(seed)
    truth, detections = {}, {}
    scores = iter(rng.permutation(200) / 200 + 0.001)
    for k in range(12):
        gt = rng.integers(1, 50, (3, 2)).astype(np.float64)
        gt = np.concatenate([gt, gt + rng.integers(5, 30, (3, 2))], axis=1)
        truth[k] = image(gt, rng.integers(0, 2, 3), rng.random(3) < 0.2)
        boxes = np.concatenate([gt + rng.normal(0, noise, gt.shape), rng.uniform(1, 60, (2, 4))])
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        detections[k] = dets(boxes, [next(scores) for _ in boxes], rng.integers(0, 2, len(boxes)))
    return truth, detections


def resampled_ap50(models, truth, resamples, seed):
    """voc_ap50 of each model on each resample, the drawn images laid out as a set of their own (an
    image drawn twice becomes two images), the draws being numpy's default_rng(seed).integers."""
    draws = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        drawn = sorted(draws.integers(0, len(truth), size=len(truth)))
        values.append(
            [
                voc_ap50(
                    {i: detections[k] for i, k in enumerate(drawn)},
                    {i: truth[k] for i, k in enumerate(drawn)},
                    num_classes=2,
                )
                for detections in models
            ]
        )
    return np.asarray(values)


def test_the_bootstrap_is_voc_ap50_on_each_resampled_set():
    truth, detections = random_set(noise=4)
    values = resampled_ap50([detections], truth, resamples=25, seed=7)[:, 0]
    ap50, sd = bootstrap_ap50(detections, truth, 25, 7, num_classes=2)
    assert ap50 == voc_ap50(detections, truth, num_classes=2)
    assert sd == pytest.approx(np.std(values, ddof=1), rel=1e-9)


def test_the_paired_bootstrap_resamples_both_models_together():
    """The sd of the AP50 difference of two models over the same resamples; 0 for a model against
    itself, whose AP50 varies over the resamples."""
    truth, sharp = random_set(noise=2)
    _, loose = random_set(noise=6)  # the same images and scores, boxes jittered 3x more
    values = resampled_ap50([sharp, loose], truth, resamples=25, seed=7)
    ap50, other, sd = bootstrap_paired_ap50(sharp, loose, truth, 25, 7, num_classes=2)
    assert (ap50, other) == (
        voc_ap50(sharp, truth, num_classes=2),
        voc_ap50(loose, truth, num_classes=2),
    )
    assert ap50 > other
    assert sd == pytest.approx(np.std(values[:, 0] - values[:, 1], ddof=1), rel=1e-9) and sd > 0
    assert bootstrap_paired_ap50(sharp, sharp, truth, 25, 7, num_classes=2)[2] == 0.0
    assert bootstrap_ap50(sharp, truth, 25, 7, num_classes=2)[1] > 0


# ------------------------------------------------------------------ with Detectron2


@pytest.fixture
def tiny_test_set(data_root):
    """The tiny set's test split registered as synthetic_voc_2007_test; its dataset dicts."""
    pytest.importorskip("detectron2")
    from detectron2.data import DatasetCatalog

    from imagescore_det.data.voc import register_synthetic_voc, synthetic_root

    register_synthetic_voc(synthetic_root(data_root, TINY_DATA))
    return DatasetCatalog.get("synthetic_voc_2007_test")


@pytest.mark.detectron2
def test_the_collector_gives_the_voc_evaluators_ap50(tiny_test_set):
    """Outputs near the ground truth (jittered, duplicated, misclassified), fed to the collector and to
    Detectron2's PascalVOCDetectionEvaluator: the same AP50, to the last bit."""
    import torch
    from detectron2.evaluation import PascalVOCDetectionEvaluator
    from detectron2.structures import Boxes, BoxMode, Instances

    from imagescore_det.data.ground_truth import add_voc_difficult, ground_truth_from_dicts
    from imagescore_det.evaluation.detections import NOISE_KEY, DetectionCollector

    name = "synthetic_voc_2007_test"
    rng = np.random.default_rng(0)
    collector, voc = DetectionCollector(name, resamples=50), PascalVOCDetectionEvaluator(name)
    collector.reset()
    voc.reset()
    for record in tiny_test_set:
        gt = np.array(
            [
                BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
                for a in record["annotations"]
            ]
        ).reshape(-1, 4)
        boxes = np.concatenate(
            [gt + rng.normal(0, 2, gt.shape), gt[:1] + 1, rng.uniform(0, 60, (2, 4))]
        )
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        classes = [a["category_id"] for a in record["annotations"]]
        classes = classes + classes[:1] + list(rng.integers(0, 5, 2))
        instances = Instances((record["height"], record["width"]))
        instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        instances.scores = torch.tensor(rng.uniform(0, 1, len(boxes)), dtype=torch.float32)
        instances.pred_classes = torch.tensor(classes, dtype=torch.int64)
        for evaluator in (collector, voc):
            evaluator.process([{"image_id": record["image_id"]}], [{"instances": instances}])
    ours = collector.evaluate()[NOISE_KEY]
    expected = voc.evaluate()["bbox"]["AP50"]
    assert 0 < expected and ours["AP50"] == pytest.approx(expected, abs=1e-9)
    assert ours["images"] == TINY_DATA["num_test"] and math.isfinite(ours["AP50_bootstrap_sd"])
    assert ours["metric"] == "VOC2007 11-point"

    # The dataset dicts' ground truth, with the annotation files' difficult flags (all 0 here).
    truth = ground_truth_from_dicts(
        add_voc_difficult(tiny_test_set, voc_dirname(name)), difficult=True
    )
    assert all(len(d) == len(c) and not d.any() for _, c, d in truth.values())
    plain = ground_truth_from_dicts(tiny_test_set)  # its callers' two arrays, unchanged
    assert all(len(value) == 2 for value in plain.values())


def voc_dirname(name):
    from detectron2.data import MetadataCatalog

    return MetadataCatalog.get(name).dirname


@pytest.mark.detectron2
def test_eval_noise_matches_the_training_evaluation_of_the_same_checkpoint(data_root, tmp_path):
    pytest.importorskip("detectron2")
    train_net, eval_noise = load_tool("train_net"), load_tool("eval_noise")
    run = tmp_path / "run"
    # Every proposal kept as a detection: even an 8-iteration model then hits a few boxes (AP50 > 0).
    threshold = ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "TEST.DETECTIONS_PER_IMAGE", "300",
                 "MODEL.ROI_HEADS.NMS_THRESH_TEST", "1.0"]  # fmt: skip
    train_net.main(train_args(run, 8, *threshold))
    with open(run / "evaluations.jsonl") as f:
        final = [json.loads(line) for line in f][-1]
    assert final["iteration"] == 8
    out = tmp_path / "noise"
    args = eval_noise.argument_parser().parse_args(
        [
            "--config-file",
            DEMO_CONFIG,
            "--weights",
            str(run / "model_final.pth"),
            "--output-dir",
            str(out),
            "--resamples",
            "100",
            "--compare-weights",
            str(run / "model_final.pth"),
            *TINY_OPTS,
            *schedule(8),
            *threshold,
            "OUTPUT_DIR",
            str(run),
        ]  # fmt: skip
    )
    record = eval_noise.main(args)
    assert record["AP50"] > 0  # some boxes found: the comparison is not of two zeros
    assert record["AP50"] == pytest.approx(record["voc_evaluator_AP50"], abs=1e-9)  # the same pass
    assert record["AP50"] == pytest.approx(final["bbox/AP50"], abs=1e-6)  # training's evaluation
    assert math.isfinite(record["AP50_bootstrap_sd"]) and record["AP50_bootstrap_sd"] >= 0
    assert record["resamples"] == 100 and record["images"] == TINY_DATA["num_test"]
    # against itself (the same checkpoint run again): the same AP50, and no difference in any resample
    assert record["compare_AP50"] == record["AP50"] and record["difference_bootstrap_sd"] == 0.0
    with open(os.path.join(out, "eval_noise.json")) as f:
        assert json.load(f) == record
