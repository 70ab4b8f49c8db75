"""The online mean teacher (IMAGESCORE.REGIME mean_teacher) on the tiny schedule, on CPU: the EMA,
the teacher outside the optimizer, the gate, the two views, an unreadable image skipped, resume and
the evaluation log."""

import copy
import json
import os
import re
import shutil

import pytest
import torch

pytest.importorskip("detectron2")
pytestmark = pytest.mark.detectron2

from detectron2.data import DatasetCatalog  # noqa: E402
from helpers import DEMO_CONFIG, TINY_DATA, TINY_OPTS, schedule, train_args  # noqa: E402

from imagescore_det.config import build_config  # noqa: E402
from imagescore_det.data.pseudo_mapper import WEAK_IMAGE_KEY, WeakStrongViewMapper  # noqa: E402
from imagescore_det.data.voc import synthetic_root  # noqa: E402
from imagescore_det.detection.gate import ScoreGate  # noqa: E402
from imagescore_det.engine import ImageScoreTrainer, setup  # noqa: E402
from imagescore_det.engine.mean_teacher import ema_update  # noqa: E402
from imagescore_det.structures import ScoredImage  # noqa: E402
from imagescore_det.study.runner import MEAN_TEACHER_ARMS, run_opts  # noqa: E402

#: The mean teacher on the tiny schedule: burn-in to 4, the box gate, references rebuilt every 6.
MEAN_TEACHER = ["IMAGESCORE.REGIME", "mean_teacher", "IMAGESCORE.MEAN_TEACHER.GATE", "box",
                "IMAGESCORE.MEAN_TEACHER.REFERENCE_PERIOD", "6"]  # fmt: skip


def trained(output_dir, max_iter, *extra):
    trainer = ImageScoreTrainer(
        setup(train_args(output_dir, max_iter, *MEAN_TEACHER, *extra), training=True)
    )
    trainer.resume_or_load(resume="--resume" in extra)
    trainer.train()
    trainer.log_summary()  # as tools/train_net.py does
    return trainer


@pytest.fixture(scope="module")
def mean_teacher_run(data_root, tmp_path_factory):
    """8 iterations, the teacher starting after 4; returns the trainer."""
    return trained(tmp_path_factory.mktemp("mean_teacher"), 8)


def test_ema_update_is_its_formula_on_a_tiny_model():
    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2)).double()
    teacher = copy.deepcopy(student)
    with torch.no_grad():
        for parameter in student.parameters():
            parameter.add_(torch.randn_like(parameter))
    student[1].running_mean.fill_(0.5)
    student[0].bias.requires_grad_(False)  # a frozen parameter: equal in both, it stays bit for bit
    teacher[0].bias.data.copy_(student[0].bias)
    before = {name: value.clone() for name, value in teacher.state_dict().items()}
    decay = 0.75
    for step in range(1, 4):
        ema_update(teacher, student, decay)
        for name, parameter in student.named_parameters():
            expected = student.state_dict()[name] + decay**step * (before[name] - parameter)
            assert torch.allclose(teacher.state_dict()[name], expected, rtol=0, atol=1e-12), name
    assert torch.equal(teacher[0].bias, student[0].bias)
    assert not torch.equal(teacher[0].weight, student[0].weight)
    assert torch.equal(teacher[1].running_mean, student[1].running_mean)  # buffers: copied


def test_teacher_gets_no_gradient_and_is_in_no_optimizer(mean_teacher_run):
    trainer = mean_teacher_run
    hook = trainer.mean_teacher
    assert hook.start_iter == 4 and not hook.teacher.training
    teacher_parameters = list(hook.teacher.parameters())
    assert all(not p.requires_grad and p.grad is None for p in teacher_parameters)
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert optimized and not optimized & {id(p) for p in teacher_parameters}
    # The teacher trailed the student by the EMA: close to it, but not the same weights.
    student = dict(trainer.model.named_parameters())
    assert any(not torch.equal(p, student[n]) for n, p in hook.teacher.named_parameters())
    with open(os.path.join(trainer.cfg.OUTPUT_DIR, "metrics.json")) as f:
        pseudo = [json.loads(line) for line in f if '"loss_pseudo_cls"' in line]
    assert pseudo and all(m["iteration"] >= 4 for m in pseudo)  # the student learnt pseudo labels


def test_gate_drops_exactly_the_boxes_below_its_threshold(mean_teacher_run):
    hook = mean_teacher_run.mean_teacher
    gate = hook.gate
    assert gate.built_at == 4 and len(gate.thresholds) == 5  # one per class; rebuilt next at 10
    batch = next(iter(hook.unlabelled_loader()))
    scores = [s for image in hook.teacher_labels(batch) for s in image.box_scores]
    assert len(scores) >= 4 and len(set(scores)) > 1
    distinct = sorted(set(scores))
    cut = distinct[len(distinct) // 2]  # one of the scores, above the lowest: ties are kept
    gate.thresholds = [cut] * len(gate.thresholds)
    records = hook.label(batch)
    kept = sum(len(record["instances"]) for record in records)
    assert kept == sum(s >= cut for s in scores) and 0 < kept < len(scores)
    image = ScoredImage(1, "x.png", 10, 10, [[0, 0, 1, 1]] * 3, [0, 1, 1], [0.9, 0.8, 0.7])
    image.box_scores = [-2.0, -3.0, -1.0]
    gate.thresholds = [-2.0, -1.5, -1.5, 0.0, 0.0]
    kept_image = gate.keep(image)
    assert kept_image.classes == [0, 1] and kept_image.box_scores == [-2.0, -1.0]
    assert kept_image.confidences == [0.9, 0.7]
    image.box_scores = [-2.1, -3.0, -1.6]
    assert gate.keep(image) is None  # every box below its class's threshold: the image goes


def test_image_gate_keeps_an_image_at_or_above_the_labelled_quantile(mean_teacher_run):
    cfg = mean_teacher_run.cfg.clone()
    cfg.defrost()
    cfg.IMAGESCORE.MEAN_TEACHER.GATE, cfg.IMAGESCORE.MEAN_TEACHER.GATE_QUANTILE = "image", 0.0
    gate = ScoreGate(cfg, mean_teacher_run.mean_teacher.teacher)
    gate.rebuild(8)
    labelled = gate.labelled_scores()
    assert len(labelled) == 6 and gate.thresholds == [min(i.image_score for i in labelled)]
    assert all(gate.keep(image) is image for image in labelled)  # quantile 0: every labelled image
    image = copy.copy(labelled[0])
    image.image_score = gate.thresholds[0] - 1e-6
    assert gate.keep(image) is None


def test_the_two_views_share_geometry_and_drop_the_annotations(data_root, tmp_path):
    cfg = setup(train_args(tmp_path, 8))  # registers the tiny synthetic set
    records = DatasetCatalog.get(cfg.IMAGESCORE.UNLABELLED_DATASETS[0])[:3]
    assert any(record["annotations"] for record in records)  # the synthetic pool keeps its truth
    for strong in (True, False):
        cfg = cfg.clone()
        cfg.defrost()
        cfg.IMAGESCORE.PSEUDO_TRAINING.STRONG_AUGMENTATION = strong
        mapper = WeakStrongViewMapper(cfg, True)
        for record in records:
            mapped = mapper(record)
            assert "instances" not in mapped and "annotations" not in mapped
            weak, image = mapped[WEAK_IMAGE_KEY], mapped["image"]
            assert weak.shape == image.shape and weak.dtype == image.dtype == torch.uint8
            assert torch.equal(weak, image) != strong


def test_teacher_is_evaluated_with_the_student_beside_it(mean_teacher_run):
    output_dir = mean_teacher_run.cfg.OUTPUT_DIR
    with open(os.path.join(output_dir, "evaluations.jsonl")) as f:
        (evaluation,) = [json.loads(line) for line in f]
    assert evaluation["iteration"] == 8 and evaluation["model"] == "teacher"
    assert {"bbox/AP50", "bbox_student/AP50", "bbox_coco_student/AP50"} <= set(evaluation)
    with open(os.path.join(output_dir, "log.txt")) as f:
        log = f.read()
    assert "Mean teacher: started after 4 iterations as a copy of the student" in log
    assert "Gate (box mode) rebuilt from the teacher at iteration 4" in log
    assert "Mean teacher, iterations up to 8: labelled 8 images with" in log
    assert "(the mean teacher; the student: " in log


def test_eval_only_tests_the_teacher_of_a_mean_teacher_checkpoint(mean_teacher_run):
    """train_net --eval-only on the run's model_final.pth loads the EMA teacher, not the student."""
    cfg = mean_teacher_run.cfg
    weights = os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
    tested = ImageScoreTrainer.model_to_test(cfg, weights).state_dict()
    teacher = mean_teacher_run.mean_teacher.teacher.state_dict()
    student = mean_teacher_run.model.state_dict()
    assert all(torch.equal(tested[name], teacher[name]) for name in teacher)
    assert any(not torch.equal(tested[name], student[name]) for name in student)


def test_an_unreadable_unlabelled_image_is_skipped_named_once_and_counted(data_root, tmp_path):
    """Two of the unlabelled images copied into a folder set, one overwritten with garbage: the
    stream draws it in every sampler epoch (at least 3 times in the 4 pseudo batches), the run
    finishes, the log names the file once and the period line counts every skip."""
    source = os.path.join(synthetic_root(data_root, TINY_DATA), "VOC2012", "JPEGImages")
    photos = tmp_path / "photos"
    photos.mkdir()
    good, bad = sorted(os.listdir(source))[:2]
    shutil.copy(os.path.join(source, good), photos / good)
    (photos / bad).write_bytes(b"\x00not a jpeg\xff" * 64)
    bad_file = str(photos / bad)
    register = ["mean_teacher_photos=folder:%s" % photos]
    trainer = trained(
        tmp_path / "run",
        8,
        *("IMAGESCORE.REGISTER_DATASETS", repr(register)),
        *("IMAGESCORE.UNLABELLED_DATASETS", "('mean_teacher_photos',)"),
    )
    assert trainer.iter == 8 and trainer.mean_teacher.unreadable_files == {bad_file}
    with open(os.path.join(trainer.cfg.OUTPUT_DIR, "log.txt")) as f:
        log = f.read()
    assert log.count("Skipping %s: it cannot be read as an image" % bad_file) == 1
    (skipped,) = re.findall(
        r"Mean teacher, iterations up to 8: .*; (\d+) unreadable images skipped", log
    )
    skipped = int(skipped)
    assert skipped >= 3
    with open(os.path.join(trainer.cfg.OUTPUT_DIR, "metrics.json")) as f:
        (period,) = [m for m in map(json.loads, f) if "mean_teacher/images" in m]
    assert period["mean_teacher/unreadable_images"] == skipped
    assert period["mean_teacher/images"] == 8 - skipped  # the good image: every other draw


def test_resuming_halfway_gives_the_weights_of_an_uninterrupted_run(data_root, tmp_path):
    """Checkpoints every 4 iterations; the gate's references are rebuilt at 4 and 10, so the resumed
    run (from 8) labels with the references of its checkpoint until 10."""
    opts = (
        "SOLVER.CHECKPOINT_PERIOD",
        "4",
        "SOLVER.WARMUP_ITERS",
        "0",
    )  # LR independent of MAX_ITER
    whole = trained(tmp_path / "whole", 12, *opts)
    first = trained(tmp_path / "resumed", 8, *opts)
    resumed = trained(tmp_path / "resumed", 12, "--resume", *opts)
    assert first.iter == 8 and resumed.start_iter == 8 and resumed.mean_teacher.gate.built_at == 10
    finals = [torch.load(str(tmp_path / run / "model_final.pth")) for run in ("whole", "resumed")]
    for key in ("model", "teacher"):
        assert finals[0][key].keys() == finals[1][key].keys()
        for name, value in finals[0][key].items():
            assert torch.equal(value, finals[1][key][name]), (key, name)
    assert not torch.equal(
        whole.mean_teacher.teacher.roi_heads.box_predictor.cls_score.weight,
        first.mean_teacher.teacher.roi_heads.box_predictor.cls_score.weight,
    )  # the 4 iterations after the resume changed the weights


def test_bad_mean_teacher_settings_fail_before_iteration_0_naming_the_key(data_root, tmp_path):
    for key, value, message in (
        (
            "IMAGESCORE.MEAN_TEACHER.GATE",
            "sometimes",
            "IMAGESCORE.MEAN_TEACHER.GATE is 'sometimes'",
        ),
        ("IMAGESCORE.MEAN_TEACHER.EMA_DECAY", "1.5", "IMAGESCORE.MEAN_TEACHER.EMA_DECAY is 1.5"),
        ("IMAGESCORE.MEAN_TEACHER.REFERENCE_PERIOD", "-1", "REFERENCE_PERIOD is -1"),
        ("IMAGESCORE.PSEUDO_TRAINING.PSEUDO_RATIO", "0.0", "PSEUDO_RATIO is 0"),
        ("IMAGESCORE.PSEUDO_TRAINING.ENABLED", "False", "PSEUDO_TRAINING.ENABLED is False"),
        ("IMAGESCORE.SWAP_ITER", "8", "the mean teacher's start would never happen"),
    ):
        with pytest.raises(ValueError, match=message):
            setup(train_args(tmp_path, 8, *MEAN_TEACHER, key, value), training=True)
    assert os.listdir(tmp_path) == []


def test_study_arms_run_the_mean_teacher_from_the_burn_in():
    cfg = build_config(DEMO_CONFIG, TINY_OPTS + schedule(10, 4, 2))
    for arm, gate in MEAN_TEACHER_ARMS.items():
        opts = run_opts(cfg, [], 0, arm, "/out")
        found = dict(zip(opts[::2], opts[1::2]))
        assert found["IMAGESCORE.REGIME"] == "mean_teacher"
        assert found["IMAGESCORE.MEAN_TEACHER.GATE"] == gate and found["TEST.EVAL_PERIOD"] == "2"
        assert "SOLVER.MAX_ITER" not in found  # the swap arms' iterations
