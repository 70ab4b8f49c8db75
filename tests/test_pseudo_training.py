"""Training on pseudo labels (docs/method.md §2 item 8) with real Detectron2: ignore regions in the RPN and the ROI
heads, weighted pseudo losses, the flag through JSON -> dataset -> mapper, and the training loader that takes on
a pseudo-labelled stream."""

import contextlib

import numpy as np
import pytest
import torch

pytest.importorskip("detectron2")
pytestmark = pytest.mark.detectron2

import detectron2.data.transforms as T  # noqa: E402
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402
from helpers import detectron2_voc_cfg, slim_vgg_cfg  # noqa: E402
from PIL import Image  # noqa: E402

from imagescore_det.data.pseudo_labels import (  # noqa: E402
    build_pseudo_label_json,
    register_pseudo_labels,
    write_json,
)
from imagescore_det.data.pseudo_mapper import (  # noqa: E402
    PseudoLabelDatasetMapper,
    RandomErasing,
    RandomGaussianBlur,
)
from imagescore_det.engine import ImageScoreTrainer, PseudoLabelTrainLoader  # noqa: E402
from imagescore_det.modeling import PseudoTargets  # noqa: E402
from imagescore_det.structures import ScoredImage  # noqa: E402

CLASSES = ("a", "b", "c")
BOX = (20.0, 16.0, 60.0, 56.0)  # the one object of the test images, XYXY


def tiny_vgg_cfg(*overrides):
    cfg = slim_vgg_cfg()
    cfg.merge_from_list(
        [
            "MODEL.ROI_HEADS.NUM_CLASSES",
            len(CLASSES),
            "MODEL.ANCHOR_GENERATOR.SIZES",
            [[16, 32, 64]],
            *overrides,
        ]
    )
    return cfg


def d2_cfg(filename):
    """Detectron2's packaged VOC config with imagescore_det's components selected."""
    cfg = detectron2_voc_cfg(filename)
    cfg.MODEL.META_ARCHITECTURE = "ImageScoreRCNN"
    cfg.MODEL.PROPOSAL_GENERATOR.NAME = "ImageScoreRPN"
    cfg.MODEL.ROI_HEADS.NAME = "ImageScore" + cfg.MODEL.ROI_HEADS.NAME
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = len(CLASSES)
    return cfg


def sample(seed, boxes=(BOX,), classes=(1,), *, pseudo=False, size=(80, 96)):
    """A model input: random image and its (pseudo) boxes."""
    generator = torch.Generator().manual_seed(seed)
    instances = Instances(
        size, gt_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    )
    instances.gt_classes = torch.tensor(classes, dtype=torch.int64)
    record = {"image": torch.rand(3, *size, generator=generator) * 255, "instances": instances}
    if pseudo:
        record["pseudo_labelled"] = True
    return record


def train_losses(model, batch, seed=0):
    torch.manual_seed(seed)
    with EventStorage():
        return model(batch)


# ---------------------------------------------------------------- ignore regions


def test_rpn_and_roi_heads_turn_background_into_ignore_only_in_pseudo_mode():
    model = build_model(tiny_vgg_cfg()).train()
    image = sample(0)["instances"]
    rpn, roi_heads = model.proposal_generator, model.roi_heads
    features = model.backbone(torch.zeros(1, 3, 80, 96))
    anchors = rpn.anchor_generator([features[f] for f in rpn.in_features])
    generator = torch.Generator().manual_seed(1)
    xy = torch.rand(200, 2, generator=generator) * 60
    boxes = Boxes(torch.cat([xy, xy + 5 + 30 * torch.rand(200, 2, generator=generator)], 1))
    proposals = Instances((80, 96), proposal_boxes=boxes, objectness_logits=torch.zeros(200))

    for pseudo in (False, True):
        torch.manual_seed(0)
        with contextlib.ExitStack() as stack:
            stack.enter_context(EventStorage())
            for head in (rpn, roi_heads) if pseudo else ():
                stack.enter_context(
                    head.pseudo_mode([PseudoTargets(True, Boxes(torch.zeros(0, 4)), 0.3)])
                )
            (anchor_labels,), _ = rpn.label_and_sample_anchors(anchors, [image])
            (sampled,) = roi_heads.label_and_sample_proposals([proposals], [image])
        assert (anchor_labels == 1).any() and (
            sampled.gt_classes < len(CLASSES)
        ).any()  # positives stay
        assert (
            bool((anchor_labels == 0).any()) != pseudo
        )  # background anchors only outside pseudo mode
        assert (
            bool((sampled.gt_classes == len(CLASSES)).any()) != pseudo
        )  # background proposals likewise


def test_ignore_boxes_ignore_only_overlapping_background_anchors():
    model = build_model(tiny_vgg_cfg()).train()
    rpn = model.proposal_generator
    anchors = rpn.anchor_generator(
        [model.backbone(torch.zeros(1, 3, 80, 96))[f] for f in rpn.in_features]
    )
    all_anchors = Boxes.cat(anchors)
    ignore_box = Boxes(torch.tensor([[50.0, 40.0, 90.0, 78.0]]))
    no_boxes = sample(0, boxes=(), classes=())["instances"]
    with rpn.pseudo_mode([PseudoTargets(False, ignore_box, 0.3)]), EventStorage():
        (labels,), _ = rpn.label_and_sample_anchors(anchors, [no_boxes])
    near = PseudoTargets(False, ignore_box, 0.3).ignored(all_anchors)
    assert near.any() and (~near).any()
    assert (labels[near] == -1).all()
    assert (labels[~near] == 0).any()  # background elsewhere is still sampled


def test_pseudo_image_without_pseudo_boxes_contributes_no_background_loss():
    model = build_model(tiny_vgg_cfg()).train()
    empty = sample(3, boxes=(), classes=(), pseudo=True)
    losses = train_losses(model, [empty])
    assert float(losses["loss_pseudo_rpn_cls"]) == 0.0 and float(losses["loss_pseudo_cls"]) == 0.0
    model.ignore_unmatched = False  # the same image, taught as background
    losses = train_losses(model, [empty])
    assert float(losses["loss_pseudo_rpn_cls"]) > 0.0 and float(losses["loss_pseudo_cls"]) > 0.0


# ---------------------------------------------------------------- losses and weights


def test_labelled_batch_gives_plain_detectron2_losses_and_mixed_batch_keeps_them():
    cfg = tiny_vgg_cfg()
    model = build_model(cfg).train()
    plain_cfg = tiny_vgg_cfg("MODEL.META_ARCHITECTURE", "GeneralizedRCNN", "MODEL.PROPOSAL_GENERATOR.NAME", "RPN",
                             "MODEL.ROI_HEADS.NAME", "StandardROIHeads")  # fmt: skip
    plain = build_model(plain_cfg).train()
    assert type(plain).__name__ == "GeneralizedRCNN" and type(model).__name__ == "ImageScoreRCNN"
    plain.load_state_dict(model.state_dict())
    labelled = [sample(0), sample(1, boxes=(BOX, (4.0, 4.0, 30.0, 40.0)), classes=(0, 2))]
    expected = train_losses(plain, labelled)
    assert set(expected) == {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"}
    for losses in (
        train_losses(model, labelled),
        train_losses(model, labelled + [sample(2, pseudo=True)]),
    ):
        for name, value in expected.items():
            assert torch.equal(losses[name], value), (
                name
            )  # the same code path, the same random draws


def test_pseudo_losses_are_weighted_by_kind_and_lambda_u():
    model = build_model(tiny_vgg_cfg("IMAGESCORE.PSEUDO_TRAINING.IGNORE_UNMATCHED", False)).train()
    batch = [sample(0), sample(1, pseudo=True)]
    unweighted = train_losses(model, batch)
    pseudo_names = {
        "loss_pseudo_rpn_cls",
        "loss_pseudo_rpn_loc",
        "loss_pseudo_cls",
        "loss_pseudo_box_reg",
    }
    assert pseudo_names <= set(unweighted) and all(float(unweighted[n]) > 0 for n in pseudo_names)
    model.reg_weight, model.cls_weight, model.lambda_u = 0.0, 0.25, 0.5
    weighted = train_losses(model, batch)
    assert (
        float(weighted["loss_pseudo_rpn_loc"]) == 0.0
        and float(weighted["loss_pseudo_box_reg"]) == 0.0
    )
    for name in ("loss_pseudo_rpn_cls", "loss_pseudo_cls"):  # powers of two: exact products
        assert torch.equal(weighted[name], unweighted[name] * 0.125), name
    assert torch.equal(weighted["loss_cls"], unweighted["loss_cls"])


def test_disabled_pseudo_training_trains_pseudo_images_as_labelled():
    model = build_model(tiny_vgg_cfg("IMAGESCORE.PSEUDO_TRAINING.ENABLED", False)).train()
    losses = train_losses(model, [sample(0), sample(1, pseudo=True)])
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"}


@pytest.mark.parametrize(
    "make_cfg",
    [
        tiny_vgg_cfg,
        lambda: d2_cfg("faster_rcnn_R_50_C4.yaml"),
        lambda: d2_cfg("faster_rcnn_R_50_FPN.yaml"),
    ],
    ids=["VGG16", "R50-C4", "R50-FPN"],
)
def test_mixed_batch_training_step(make_cfg):
    model = build_model(make_cfg()).train()
    batch = [
        sample(0, size=(64, 80)),
        sample(1, pseudo=True, size=(64, 80)),
        sample(2, (), (), pseudo=True, size=(64, 80)),
    ]
    losses = train_losses(model, batch)
    assert {"loss_cls", "loss_pseudo_cls", "loss_pseudo_box_reg"} <= set(losses)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.roi_heads.parameters())
    model.eval()
    with torch.no_grad():
        (output,) = model([{"image": batch[0]["image"]}])
    assert output["instances"].image_size == (64, 80)


def test_pseudo_images_need_heads_with_a_pseudo_mode():
    model = build_model(tiny_vgg_cfg("MODEL.ROI_HEADS.NAME", "StandardROIHeads")).train()
    with pytest.raises(ValueError, match="MODEL.ROI_HEADS.NAME builds StandardROIHeads"):
        train_losses(model, [sample(0), sample(1, pseudo=True)])


# ---------------------------------------------------------------- data path


@pytest.fixture
def pseudo_dataset(tmp_path):
    """Two images on disk, pseudo-labelled with one box and one ignore box each, registered."""
    images = []
    for index in range(2):
        path = str(tmp_path / ("img%d.png" % index))
        Image.fromarray(
            np.random.default_rng(index).integers(0, 255, (80, 96, 3), dtype=np.uint8)
        ).save(path)
        images.append(
            ScoredImage(
                index,
                path,
                80,
                96,
                [list(BOX)],
                [2],
                [0.9],
                0.8,
                ignore_boxes=[[50.0, 40.0, 90.0, 78.0]],
                image_score=1.0 - index,
                terms={"conv1": 0.0},
                ranking_value=1.0 - index,
            )  # fmt: skip
        )
    json_file = str(tmp_path / "pseudo.json")
    write_json(json_file, build_pseudo_label_json(images, CLASSES, keep_empty=False, info={}))
    name = "test_pseudo_training_%d" % id(tmp_path)
    assert register_pseudo_labels(name, json_file, CLASSES) == 2
    yield name, images
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def test_flag_and_ignore_boxes_survive_json_dataset_and_mapper(pseudo_dataset):
    name, _ = pseudo_dataset
    records = DatasetCatalog.get(name)
    assert [r["pseudo_labelled"] for r in records] == [True, True]
    assert (
        records[0]["ignore_boxes"] == [[50.0, 40.0, 90.0, 78.0]]
        and records[0]["annotations"][0]["category_id"] == 2
    )
    record = dict(records[0], ignore_boxes=[list(BOX)])  # an ignore box where the pseudo box is
    cfg = tiny_vgg_cfg("INPUT.MIN_SIZE_TRAIN", (160,), "INPUT.MAX_SIZE_TRAIN", 1000)
    np.random.seed(0)
    mapped = [
        PseudoLabelDatasetMapper(cfg, True)(record) for _ in range(6)
    ]  # RandomFlip: both sides occur
    for item in mapped:
        assert item["pseudo_labelled"] is True and item["image"].shape[-2:] == (160, 192)
        assert torch.equal(item["ignore_boxes"].tensor, item["instances"].gt_boxes.tensor)
    assert (
        len({tuple(item["ignore_boxes"].tensor[0].tolist()) for item in mapped}) == 2
    )  # flipped and not


def test_strong_augmentation_touches_only_pseudo_labelled_images(pseudo_dataset):
    name, _ = pseudo_dataset
    pseudo = DatasetCatalog.get(name)[0]
    labelled = {k: v for k, v in pseudo.items() if k not in ("pseudo_labelled", "ignore_boxes")}
    cfg = tiny_vgg_cfg("IMAGESCORE.PSEUDO_TRAINING.STRONG_AUGMENTATION", True)
    strong, plain = PseudoLabelDatasetMapper(cfg, True), DatasetMapper(cfg, True)

    def mapped(mapper, record):
        np.random.seed(5)
        return mapper(record)

    assert torch.equal(mapped(strong, labelled)["image"], mapped(plain, labelled)["image"])
    strong_pseudo, plain_pseudo = mapped(strong, pseudo), mapped(plain, pseudo)
    assert strong_pseudo["image"].shape == plain_pseudo["image"].shape
    assert not torch.equal(strong_pseudo["image"], plain_pseudo["image"])
    assert torch.equal(
        strong_pseudo["instances"].gt_boxes.tensor, plain_pseudo["instances"].gt_boxes.tensor
    )


# ---------------------------------------------------------------- sampling


def test_train_loader_yields_the_labelled_stream_plus_pseudo_images(pseudo_dataset):
    name, _ = pseudo_dataset
    cfg = tiny_vgg_cfg(
        "SOLVER.IMS_PER_BATCH",
        2,
        "IMAGESCORE.PSEUDO_TRAINING.PSEUDO_RATIO",
        1.5,
        "DATALOADER.NUM_WORKERS",
        0,
    )
    labelled = [
        [{"tag": 2 * i}, {"tag": 2 * i + 1}] for i in range(3)
    ]  # an ongoing labelled stream
    loader = PseudoLabelTrainLoader(iter(labelled))
    pseudo = ImageScoreTrainer.build_pseudo_loader(cfg, name)
    assert pseudo is not None
    loader.attach_pseudo(pseudo)
    batches = list(loader)
    assert (
        len(batches) == 3
    )  # as long as the labelled stream; the pseudo-labelled loader is infinite
    for i, batch in enumerate(batches):
        assert [x.get("tag") for x in batch[:2]] == [2 * i, 2 * i + 1]
        assert len(batch) == 2 + 3 and all(x["pseudo_labelled"] for x in batch[2:])
    cfg.IMAGESCORE.PSEUDO_TRAINING.PSEUDO_RATIO = 0.25
    with pytest.raises(ValueError, match="PSEUDO_RATIO=0.25 x SOLVER.IMS_PER_BATCH=2"):
        ImageScoreTrainer.build_pseudo_loader(cfg, name)
    cfg.IMAGESCORE.PSEUDO_TRAINING.PSEUDO_RATIO = 0.0
    assert (
        ImageScoreTrainer.build_pseudo_loader(cfg, name) is None
    )  # no pseudo images per batch: no loader
    plain = PseudoLabelTrainLoader(iter(labelled))
    plain.attach_pseudo(None)  # what the swap hook attaches then: the labelled stream alone
    assert list(plain) == labelled


def test_build_train_loader_wraps_detectron2s_loader(pseudo_dataset):
    name, _ = pseudo_dataset
    cfg = tiny_vgg_cfg(
        "SOLVER.IMS_PER_BATCH", 2, "DATALOADER.NUM_WORKERS", 0, "DATASETS.TRAIN", (name,)
    )
    loader = ImageScoreTrainer.build_train_loader(cfg)
    assert isinstance(loader, PseudoLabelTrainLoader) and loader.pseudo is None
    (batch,) = [batch for _, batch in zip(range(1), loader)]
    assert len(batch) == 2 and all(x["image"].dim() == 3 for x in batch)


def test_strong_view_cutout_and_blur_change_pixels_only_where_and_as_drawn():
    image = np.full((60, 80, 3), 128, dtype=np.uint8)
    image[20:40, 30:50] = 250  # a bright square for the blur to spread
    np.random.seed(3)
    erasing = RandomErasing(1.0, scale=(0.1, 0.1), ratio=(1.0, 1.0))
    changed = erasing.get_transform(image).apply_image(image) != image
    rows, cols = np.nonzero(changed.any(axis=2))
    height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert (height, width) == (22, 22)  # sqrt(0.1 * 60 * 80) = 21.9, a square
    assert (
        changed.any(axis=2).sum() > 0.9 * height * width
    )  # random fill: almost every pixel differs
    blur = RandomGaussianBlur(prob=1.0, sigma=(2.0, 2.0)).get_transform(image)
    blurred = blur.apply_image(image)
    assert (
        blurred.dtype == np.uint8 and blurred[30, 40, 0] == 250 and 128 < blurred[30, 29, 0] < 250
    )
    assert isinstance(RandomGaussianBlur(prob=0.0).get_transform(image), T.NoOpTransform)
    assert np.array_equal(blur.apply_coords(np.array([[1.0, 2.0]])), [[1.0, 2.0]])
