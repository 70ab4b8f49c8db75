"""Box mode: per-class references from ground-truth boxes, box scores, their rankings (issue 10) and
the box filter (issue 18).

Models are random-initialised and tiny inputs are made by hand (no data set), so each test takes a
few seconds; the R50 detectors keep few proposals for the same reason.
"""

import json
import math

import numpy as np
import pytest
import torch

pytest.importorskip("detectron2")
pytestmark = pytest.mark.detectron2

from detectron2.data import MetadataCatalog  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.structures import Boxes  # noqa: E402
from helpers import detectron2_voc_cfg, project_cfg  # noqa: E402

from imagescore_det.detection.modes import (  # noqa: E402
    BoxMode,
    ImageMode,
    build_references,
    score_images,
    score_truth_boxes,
)
from imagescore_det.detection.passes import run_recorded  # noqa: E402
from imagescore_det.detection.ranking import (  # noqa: E402
    aggregate,
    box_filter_threshold,
    box_ranking_values,
    filter_boxes,
    rank_product,
)
from imagescore_det.detection.selection import write_selection  # noqa: E402
from imagescore_det.evaluation.mode_comparison import mean_and_sd  # noqa: E402
from imagescore_det.modeling.box_recording import BoxRecorder, default_box_layers, to_input_boxes  # noqa: E402
from imagescore_det.scoring import ClassReferences  # noqa: E402
from imagescore_det.structures import ScoredImage  # noqa: E402

CLASSES = ["square", "circle", "triangle"]
#: The labelled set the box references are built for: only its class list is read (BoxMode takes it from the metadata).
LABELLED = "test_box_mode_labelled"
MetadataCatalog.get(LABELLED).set(thing_classes=CLASSES)
FEW_PROPOSALS = ["MODEL.RPN.PRE_NMS_TOPK_TEST", 60, "MODEL.RPN.POST_NMS_TOPK_TEST", 30]
DETECT_ANYTHING = [
    "MODEL.ROI_HEADS.NUM_CLASSES",
    3,
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
    0.0,
    "TEST.DETECTIONS_PER_IMAGE",
    4,
]
# A quarter-width R50 whose random-initialised activations stay finite: inputs scaled to unit spread.
SLIM_R50 = [
    "MODEL.RESNETS.WIDTH_PER_GROUP",
    16,
    "MODEL.RESNETS.RES2_OUT_CHANNELS",
    64,
    "MODEL.FPN.OUT_CHANNELS",
    64,
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    64,
    "MODEL.PIXEL_STD",
    [57.375, 57.12, 58.395],
]
#: The scoring settings of these tests (the old keyword arguments): references per class, overlap formula, min aggregate.
SCORING = ["IMAGESCORE.LABELLED_DATASETS", (LABELLED,), "IMAGESCORE.GRID", 4, "IMAGESCORE.THRESHOLD_RATIO", 0.5,
           "IMAGESCORE.THRESHOLD_STAT", "max", "IMAGESCORE.FORMULA", "overlap", "IMAGESCORE.BOX.AGGREGATE", "min",
           "IMAGESCORE.BOX.RANKING", "score"]  # fmt: skip


def detector_and_cfg(kind, *overrides):
    """A random-initialised detector of 3 classes that reports its 4 best boxes, whatever their confidence; and its config."""
    if kind == "vgg16":
        cfg = project_cfg(
            "Base-VGG16.yaml", "IMAGESCORE.VGG.WIDTH_DIVISOR", 8, "MODEL.ROI_BOX_HEAD.FC_DIM", 32
        )
    else:
        cfg = detectron2_voc_cfg(
            {"r50_c4": "faster_rcnn_R_50_C4.yaml", "r50_fpn": "faster_rcnn_R_50_FPN.yaml"}[kind]
        )
        cfg.merge_from_list(SLIM_R50)
    cfg.merge_from_list(FEW_PROPOSALS + DETECT_ANYTHING + SCORING + list(overrides))
    torch.manual_seed(0)
    return build_model(cfg).eval(), cfg


def inputs_and_truth(num_images, seed=0):
    """Images resized from 192x240 to 96x120 (as a test-time mapper would), with boxes of all 3 classes."""
    generator = torch.Generator().manual_seed(seed)
    inputs, truth = [], {}
    for i in range(num_images):
        image = torch.randint(0, 256, (3, 96, 120), generator=generator).float()
        inputs.append(
            {
                "image": image,
                "height": 192,
                "width": 240,
                "image_id": i,
                "file_name": "image%d.jpg" % i,
            }
        )
        boxes = np.array(
            [[10, 12, 90, 100], [100, 30, 230, 180], [40 + 10 * i, 60, 200, 150]], dtype=np.float64
        )
        truth[i] = (boxes, np.array([0, 1, 2 - i % 2]))
    return inputs, truth


def batches(inputs):
    return [
        [record] for record in inputs
    ]  # one image per batch, as Detectron2's test loader gives them


def references_of(model, cfg, inputs, truth):
    return build_references(model, batches(inputs), [BoxMode(cfg, model, "test")], truth=truth)[
        "box"
    ]


@pytest.mark.parametrize(
    "kind, layers",
    [
        ("vgg16", ["box_pooler", "box_head.fc_relu1", "box_head.fc_relu2"]),
        ("r50_c4", ["pooler", "res5"]),
        ("r50_fpn", ["box_pooler", "box_head.fc_relu1", "box_head.fc_relu2"]),
    ],
)
def test_box_mode_scores_every_pseudo_box_with_vgg16_c4_and_fpn(kind, layers):
    model, cfg = detector_and_cfg(kind)
    assert default_box_layers(model.roi_heads) == layers
    inputs, truth = inputs_and_truth(2)
    scorer = BoxMode(cfg, model, "test")
    references = build_references(model, batches(inputs), [scorer], truth=truth)["box"]
    assert sorted(references.references) == [0, 1, 2] and references.layers == layers
    assert references.metadata["examples_per_class"] == {"square": 2, "circle": 3, "triangle": 1}

    images = score_images(
        model, batches(inputs), [scorer], {"box": references}, pseudo_score_thresh=0.0
    )
    assert [image.image_id for image in images] == [0, 1]
    assert sum(len(image.boxes) for image in images) > 0
    values = scorer.ranking_values(references, images)  # BOX.RANKING score, BOX.AGGREGATE min
    for image, value in zip(images, values):
        assert len(image.box_scores) == len(image.boxes) == len(image.classes)
        assert all(references.lowest_score < s <= 0.0 for s in image.box_scores)
        assert value == (min(image.box_scores) if image.box_scores else references.lowest_score)
        assert math.isnan(image.image_score) and image.terms == {}  # box mode alone: no image score


def test_reference_from_ground_truth_boxes_equals_one_built_by_hand():
    """Same ROI activations, recorded by hooks on the box head's modules while running its parts by hand."""
    model, cfg = detector_and_cfg("vgg16")
    inputs, truth = inputs_and_truth(3)
    references = references_of(model, cfg, inputs, truth)

    heads = model.roi_heads
    rows = {c: [] for c in range(len(CLASSES))}
    with torch.no_grad():
        for record in inputs:
            features = model.backbone(model.preprocess_image([record]).tensor)
            boxes, classes = truth[record["image_id"]]
            scale = torch.tensor([120 / 240, 96 / 192] * 2)  # input size / original size, x then y
            pooled = heads.box_pooler(
                [features[f] for f in heads.box_in_features],
                [Boxes(torch.tensor(boxes).float() * scale)],
            )
            fc6 = torch.relu(heads.box_head.fc1(pooled.flatten(1)))
            fc7 = torch.relu(heads.box_head.fc2(fc6))
            for row, c in enumerate(classes):
                rows[int(c)].append(
                    {
                        "box_pooler": pooled[row],
                        "box_head.fc_relu1": fc6[row],
                        "box_head.fc_relu2": fc7[row],
                    }
                )

    for c, examples in rows.items():
        reference = references.references[c]
        assert reference.metadata["num_images"] == len(examples)  # one example per ground-truth box
        for layer in reference.layers:
            mean = torch.stack([example[layer] for example in examples]).double().mean(dim=0)
            # float64 sums of the same float32 rows, taken in another order: equal to ~1e-15.
            assert torch.allclose(reference.mean[layer], mean, rtol=0, atol=1e-9)
            threshold = 0.5 * float(mean.max())
            assert reference.thresholds[layer] == pytest.approx(threshold, abs=1e-9)
            # Both means and both thresholds agree to 1e-9, and no unit lies within 1e-8 of its
            # threshold on these inputs, so the two masks must be equal unit for unit.
            assert float((mean - threshold).abs().min()) > 1e-8, (c, layer)
            assert torch.equal(reference.masks[layer], mean >= threshold)


def test_box_scores_do_not_depend_on_the_other_detections_in_the_image():
    model, cfg = detector_and_cfg("vgg16")
    inputs, truth = inputs_and_truth(2)
    references = references_of(model, cfg, inputs, truth)
    recorder = BoxRecorder(model, [])
    boxes = to_input_boxes(
        [[5, 5, 100, 120], [60, 40, 220, 170], [0, 0, 239, 191]], inputs[0], (96, 120)
    )
    classes = [0, 1, 2]
    with torch.no_grad(), recorder.recording():
        model([inputs[0]])
        together = recorder.record([boxes])
        alone = [recorder.record([boxes[i : i + 1]]) for i in range(3)]
    scores_together = references.score(together, classes)
    for i in range(3):
        # ROI pooling works box by box: bit-identical. The FC layers multiply a [1, K] or [3, K] matrix,
        # which a BLAS may sum in another order: equal to float32 rounding.
        assert torch.equal(alone[i]["box_pooler"][0], together["box_pooler"][i])
        for layer in ("box_head.fc_relu1", "box_head.fc_relu2"):
            assert torch.allclose(alone[i][layer][0], together[layer][i], rtol=1e-5, atol=1e-6)
        # Rounding can move only a unit that sits on its threshold: these boxes have none within
        # 1e-5 of it in the rounded layers, far more than the rounding, so the scores must be equal.
        reference = references.references[classes[i]]
        rounded = [layer for layer in reference.scored_layers if layer != "box_pooler"]
        assert rounded == ["box_head.fc_relu1", "box_head.fc_relu2"]
        for layer in rounded:
            distance = (together[layer][i].double() - reference.thresholds[layer]).abs()
            assert float(distance.min()) > 1e-5, (i, layer)
        assert float(references.score(alone[i], [classes[i]])[0]) == float(scores_together[i])


def test_image_and_box_mode_share_one_forward_per_batch_and_score_as_alone():
    """Both modes' recorders on the same forward pass: one model call per batch in each pass, and the
    same scores as each mode run alone."""
    model, cfg = detector_and_cfg("vgg16")
    inputs, truth = inputs_and_truth(2)
    calls = []
    model.register_forward_pre_hook(lambda module, args: calls.append(1))

    def run(names):
        scorers = [{"image": ImageMode, "box": BoxMode}[name](cfg, model, "test") for name in names]
        calls.clear()
        references = build_references(model, batches(inputs), scorers, truth=truth)
        assert len(calls) == len(
            inputs
        )  # the reference pass: one forward per batch, whatever the modes
        calls.clear()
        images = score_images(model, batches(inputs), scorers, references, pseudo_score_thresh=0.0)
        assert len(calls) == len(inputs)  # the scoring pass likewise
        return references, images

    references, both = run(["image", "box"])
    assert sorted(references) == ["box", "image"] and isinstance(references["box"], ClassReferences)
    _, image_alone = run(["image"])
    _, box_alone = run(["box"])
    for image, alone_i, alone_b in zip(both, image_alone, box_alone):
        assert math.isfinite(image.image_score) and image.image_score == pytest.approx(
            sum(image.terms.values())
        )
        assert (image.image_score, image.terms) == (alone_i.image_score, alone_i.terms)
        assert image.box_scores == alone_b.box_scores and len(image.box_scores) == len(image.boxes)
        assert math.isnan(
            image.ranking_value
        )  # set by score_unlabelled, from the configured mode, after the gather


def test_box_mode_needs_no_recording_backbone_and_image_mode_says_it_does():
    model, cfg = detector_and_cfg("vgg16", "MODEL.BACKBONE.NAME", "build_vgg16_backbone")
    assert not hasattr(model.backbone, "recorder")
    inputs, truth = inputs_and_truth(2)
    references = references_of(model, cfg, inputs, truth)
    assert references.metadata["examples_per_class"] == {"square": 2, "circle": 3, "triangle": 1}
    with pytest.raises(
        ValueError,
        match="cannot record activations: set MODEL.BACKBONE.NAME to build_imagescore_backbone",
    ):
        ImageMode(cfg, model, "test")


def test_box_layers_off_the_box_feature_path_and_bad_settings_are_refused_before_any_pass():
    model, cfg = detector_and_cfg("vgg16")
    with pytest.raises(
        ValueError,
        match=r"IMAGESCORE.BOX.LAYERS \['box_predictor.cls_score'\] are not on the box feature path",
    ):
        BoxRecorder(model, ["box_predictor.cls_score"])
    assert BoxRecorder(model, ["box_head.fc1"]).layers == ["box_head.fc1"]
    cfg.IMAGESCORE.BOX.LAYERS = ["box_predictor"]
    with pytest.raises(ValueError, match="not on the box feature path"):
        BoxMode(cfg, model, "test")
    cfg.IMAGESCORE.BOX.LAYERS = []
    for key, value in (("AGGREGATE", "max"), ("RANKING", "product")):
        bad = cfg.clone()
        bad.IMAGESCORE.BOX[key] = value
        with pytest.raises(
            ValueError, match="IMAGESCORE.BOX.%s is %r; choose one of" % (key, value)
        ):
            BoxMode(bad, model, "test")


def test_class_references_save_their_mode_and_classes(tmp_path):
    model, cfg = detector_and_cfg("vgg16")
    inputs, truth = inputs_and_truth(2)
    references = references_of(model, cfg, inputs, truth)
    path = str(tmp_path / "box_references.pt")
    references.save(path)
    loaded = ClassReferences.load(path, mode="box", class_names=CLASSES)
    for c, reference in references.references.items():
        for layer in reference.layers:
            assert torch.equal(loaded.references[c].mean[layer], reference.mean[layer])
    with pytest.raises(ValueError, match="score mode 'box', not 'image'"):
        ClassReferences.load(path, mode="image")
    with pytest.raises(ValueError, match="was built for classes"):
        ClassReferences.load(path, class_names=["square", "circle"])


def scored(image_id, box_scores, confidences):
    return ScoredImage(
        image_id,
        "%s.jpg" % image_id,
        10,
        10,
        [[0, 0, 1, 1]] * len(confidences),
        [0] * len(confidences),
        list(confidences),
        box_scores=list(box_scores),
    )


def test_rankings_aggregate_boxes_and_put_images_without_boxes_last():
    images = [
        scored("a", [-1.0, -3.0], [0.9, 0.6]),
        scored("b", [-2.0], [0.8]),
        scored("c", [], []),
    ]
    assert (
        aggregate([-1.0, -3.0], "min", empty=-9) == -3.0
        and aggregate([-1.0, -3.0], "mean", empty=-9) == -2.0
    )
    assert box_ranking_values(images, "score", "min", empty_score=-100.0).tolist() == [
        -3.0,
        -2.0,
        -100.0,
    ]
    # Box ranks (of 3): -1 -> 3, -3 -> 1, -2 -> 2; confidence ranks: 0.9 -> 3, 0.6 -> 1, 0.8 -> 2.
    products = rank_product(images)
    assert [p.tolist() for p in products] == [[1.0, 1 / 9], [4 / 9], []]
    values = box_ranking_values(images, "score_x_confidence", "mean", empty_score=-100.0)
    assert values.tolist() == [5 / 9, 4 / 9, 0.0]
    with pytest.raises(ValueError, match="IMAGESCORE.BOX.RANKING"):
        box_ranking_values(images, "product", "min", empty_score=-1.0)
    # Mean of each image's box scores; the image without boxes gets the empty score it is given.
    values = box_ranking_values(images, "score", "mean", empty_score=-7.5)
    assert values.tolist() == [-2.0, -2.0, -7.5]


def test_mean_and_sd_over_teachers_match_rows_by_key_and_skip_undefined_cells():
    tables = [
        [
            {"strategy": "box", "precision": 0.8, "images": 3},
            {"strategy": "random", "precision": float("nan"), "images": 3},
        ],
        [
            {"strategy": "box", "precision": 0.6, "images": 5},
            {"strategy": "random", "precision": 0.5, "images": 3},
        ],
    ]
    box, random = mean_and_sd(tables, "strategy")
    assert (
        box["n"] == 2
        and box["precision_mean"] == pytest.approx(0.7)
        and box["precision_sd"] == pytest.approx(math.sqrt(0.02))
    )
    assert (box["images_mean"], box["images_sd"]) == (4.0, pytest.approx(math.sqrt(2)))
    assert random["precision_mean"] == 0.5 and math.isnan(
        random["precision_sd"]
    )  # one defined value: no spread
    with pytest.raises(ValueError, match="different rows"):
        mean_and_sd([tables[0], tables[1][::-1]], "strategy")


def test_the_box_filter_keeps_the_boxes_at_or_above_the_quantile_and_ignores_the_rest():
    truth_scores = [-4.0, -3.0, -2.0, -1.0, 0.0]  # quantile 0.25: -3.0 (linear interpolation)
    assert box_filter_threshold(truth_scores, 0.25) == -3.0
    assert box_filter_threshold(truth_scores, 0.6) == pytest.approx(-1.6)
    a = scored("a", [-3.5, -3.0, -0.5], [0.9, 0.8, 0.7])
    a.boxes = [[0, 0, 1, 1], [1, 1, 2, 2], [2, 2, 3, 3]]
    a.classes, a.ignore_boxes = [0, 1, 2], [[5, 5, 6, 6]]
    b = scored("b", [-9.0], [0.95])
    kept = filter_boxes([a, b, scored("c", [], [])], box_filter_threshold(truth_scores, 0.25))
    assert [image.image_id for image in kept] == ["a", "b", "c"]
    first, second, third = kept
    # Exactly the boxes at or above the threshold stay, with their classes, confidences and scores.
    assert first.boxes == [[1, 1, 2, 2], [2, 2, 3, 3]] and first.classes == [1, 2]
    assert first.confidences == [0.8, 0.7] and first.box_scores == [-3.0, -0.5]
    assert first.ignore_boxes == [
        [5, 5, 6, 6],
        [0, 0, 1, 1],
    ]  # the failing one joins the ignore boxes
    assert second.boxes == [] and second.ignore_boxes == [[0, 0, 1, 1]] and third.boxes == []
    assert (
        a.boxes[0] == [0, 0, 1, 1] and len(a.box_scores) == 3
    )  # copies: the scored records stay whole
    with pytest.raises(ValueError, match="score it in box mode"):
        filter_boxes([scored("d", [], [0.9])], -1.0)
    with pytest.raises(ValueError, match="ground-truth box scores, and there are none"):
        box_filter_threshold([], 0.1)


def test_box_filter_calibrates_on_the_labelled_boxes_and_writes_the_rest_as_ignore_boxes(tmp_path):
    """A real detector: the labelled pass scores each ground-truth box as box mode scores a pseudo box
    there, and the swap's writer keeps exactly the pseudo boxes that clear the quantile."""
    model, cfg = detector_and_cfg("vgg16", "IMAGESCORE.SCORE_MODE", "box")
    inputs, truth = inputs_and_truth(3)
    scorer = BoxMode(cfg, model, "test")
    references = build_references(model, batches(inputs), [scorer], truth=truth)["box"]
    truth_scores, truth_classes = score_truth_boxes(
        model, batches(inputs), scorer, references, truth=truth
    )
    assert sorted(truth_classes.tolist()) == sorted(
        c for record in inputs for c in truth[record["image_id"]][1].tolist()
    )  # every ground-truth box once, with its class
    assert (
        truth_scores.dtype == np.float64 and len(truth_scores) == 9
    )  # 3 boxes in each of 3 images

    as_pseudo = {
        i: ScoredImage(i, "image%d.jpg" % i, 192, 240, boxes.tolist(), classes.tolist(), [1.0] * 3)
        for i, (boxes, classes) in truth.items()
    }
    run_recorded(
        model,
        batches(inputs),
        [scorer.recorder],
        lambda batch, outputs: scorer.score(
            references, batch, [as_pseudo[x["image_id"]] for x in batch]
        ),
        description="test",
    )
    assert truth_scores.tolist() == [s for i in range(3) for s in as_pseudo[i].box_scores]

    # Each image's pseudo boxes: its ground-truth boxes, which score as in the labelled pass, and the
    # random-initialised detector's own detections, which score below every one of them.
    detections = score_images(model, batches(inputs), [scorer], {"box": references}, pseudo_score_thresh=0.0)  # fmt: skip
    assert max(s for d in detections for s in d.box_scores) < truth_scores.min()
    images = [
        ScoredImage(
            d.image_id,
            d.file_name,
            d.height,
            d.width,
            as_pseudo[d.image_id].boxes + d.boxes,
            as_pseudo[d.image_id].classes + d.classes,
            as_pseudo[d.image_id].confidences + d.confidences,
            box_scores=as_pseudo[d.image_id].box_scores + d.box_scores,
        )
        for d in detections
    ]
    for image, value in zip(images, scorer.ranking_values(references, images)):
        image.ranking_value = float(value)
    references.truth_scores = torch.as_tensor(truth_scores)
    quantile = 0.5
    threshold = float(np.quantile(truth_scores, quantile))
    cfg.merge_from_list(["IMAGESCORE.SELECTION", "box_filter", "IMAGESCORE.BOX.FILTER_QUANTILE", quantile])  # fmt: skip
    written = write_selection(cfg, references, images, model_info={}, output_dir=str(tmp_path))
    with open(written["pseudo_labels"]) as f:
        payload = json.load(f)
    info = payload["info"]["box_filter"]
    assert payload["info"]["selection"] == "box_filter" and info["threshold"] == threshold

    def split(image, passes):
        return [box for box, score in zip(image.boxes, image.box_scores) if (score >= threshold) == passes]  # fmt: skip

    passing = {image.image_id: split(image, True) for image in images if split(image, True)}
    failing = {image.image_id: split(image, False) for image in images}
    assert sum(map(len, passing.values())) == 5  # the ground-truth boxes at or above their median
    assert (info["kept"], info["ignored"]) == (
        sum(map(len, passing.values())),
        sum(map(len, failing.values())),
    )
    source = {entry["id"]: entry["source_image_id"] for entry in payload["images"]}
    assert sorted(source.values()) == sorted(
        passing
    )  # an image left without pseudo boxes is dropped
    written_boxes = {}
    for a in payload["annotations"]:
        x, y, w, h = a["bbox"]
        written_boxes.setdefault(source[a["image_id"]], []).append([x, y, x + w, y + h])
    for image_id, boxes in passing.items():  # exactly the boxes at or above the threshold, in order
        np.testing.assert_allclose(written_boxes[image_id], boxes, atol=1e-4)
    for entry in payload["images"]:  # and the failing ones as ignore regions
        failed = np.reshape(failing[entry["source_image_id"]], (-1, 4))
        np.testing.assert_allclose(np.reshape(entry["ignore_boxes"], (-1, 4)), failed, atol=1e-4)

    path = str(tmp_path / "references.pt")
    references.save(path)
    assert torch.equal(ClassReferences.load(path, mode="box").truth_scores, references.truth_scores)
    with pytest.raises(ValueError, match="'box_filter' needs box references"):
        write_selection(cfg, object(), images, model_info={}, output_dir=str(tmp_path))
