"""The image score's maths and the properties docs/method.md §1 requires of it."""

import math

import pytest
import torch
import torchvision

from imagescore_det.scoring import ActivationRecorder, Reference, ReferenceBuilder


def random_acts(num_images, seed, shapes=None):
    """ReLU-like activations: non-negative, with unit-specific means so masks are non-trivial."""
    shapes = shapes or {"conv": (4, 5, 5), "fc": (12,)}
    generator = torch.Generator().manual_seed(seed)
    acts = {}
    for index, (name, shape) in enumerate(shapes.items()):
        unit_scale = torch.rand(shape, generator=torch.Generator().manual_seed(100 + index)) * 3
        noise = torch.randn((num_images,) + tuple(shape), generator=generator)
        acts[name] = torch.relu(unit_scale + noise)
    return acts


def build(acts, **settings):
    return ReferenceBuilder(**settings).update(acts).finalize()


def take(acts, index):
    return {name: value[index] for name, value in acts.items()}


def test_hand_computed_example_for_both_formulas():
    reference = build({"layer": torch.tensor([[1.0, 0.0, 2.0, 0.0], [3.0, 0.0, 2.0, 0.0]])})
    # mean = [2, 0, 2, 0]; threshold = 0.5 * max = 1; mask = [1, 0, 1, 0]; K = 2.
    assert reference.thresholds["layer"] == 1.0
    assert reference.masks["layer"].tolist() == [True, False, True, False]
    image = {"layer": torch.tensor([[2.0, 5.0, 0.0, 0.0]])}
    assert reference.score(image, formula="overlap").item() == pytest.approx(math.log(2 / 3))
    assert reference.score(image, formula="count").item() == pytest.approx(math.log(3 / 3))


@pytest.mark.parametrize(
    "stat, expected", [("max", 0.5 * 4.0), ("l1", 0.5 * 1.5), ("l2", 0.5 * math.sqrt(5.0))]
)
def test_threshold_statistics(stat, expected):
    reference = build({"layer": torch.tensor([[0.0, 2.0, 0.0, 4.0]])}, threshold_stat=stat)
    assert reference.thresholds["layer"] == pytest.approx(expected)


def test_image_equal_to_reference_mean_scores_zero():
    acts = random_acts(20, seed=1)
    reference = build(acts)
    mean_image = {name: value.unsqueeze(0) for name, value in reference.mean.items()}
    assert reference.score(mean_image).item() == 0.0
    assert all(term.item() == 0.0 for term in reference.layer_terms(mean_image).values())


def test_scores_are_at_most_zero_and_terms_sum_to_scores():
    acts = random_acts(30, seed=2)
    reference = build(acts)
    scores = reference.score(acts)
    terms = reference.layer_terms(acts)
    assert scores.dtype == torch.float64 and (scores <= 0).all()
    assert torch.equal(sum(terms.values()), scores)


def test_scores_do_not_depend_on_batch_size_or_composition():
    acts = random_acts(24, seed=3)
    reference = build(acts)
    whole = reference.score(acts)
    one_by_one = torch.cat([reference.score(take(acts, slice(i, i + 1))) for i in range(24)])
    shuffled = torch.randperm(24, generator=torch.Generator().manual_seed(0))
    assert torch.equal(whole, one_by_one)
    assert torch.equal(reference.score(take(acts, shuffled)), whole[shuffled])


def assert_same_reference(first, second, probe):
    """Equal mean maps (to float64 rounding), identical masks, equal scores of ``probe``."""
    assert first.metadata["num_images"] == second.metadata["num_images"]
    for name in first.mean:
        assert torch.allclose(first.mean[name], second.mean[name], rtol=0, atol=1e-12)
        assert torch.equal(first.masks[name], second.masks[name])
    assert torch.allclose(first.score(probe), second.score(probe), rtol=0, atol=1e-12)


def test_reference_does_not_depend_on_image_order():
    acts = random_acts(40, seed=4)
    reversed_order = take(acts, torch.arange(39, -1, -1))
    assert_same_reference(build(acts), build(reversed_order), probe=random_acts(10, seed=5))


def test_shards_merged_equal_one_build():
    acts = random_acts(30, seed=6)
    shards = [
        ReferenceBuilder().update(take(acts, slice(start, start + 10))) for start in (0, 10, 20)
    ]
    merged = shards[0].merge(shards[1]).merge(shards[2]).finalize()
    assert merged.metadata["num_images"] == 30
    assert_same_reference(merged, build(acts), probe=random_acts(8, seed=7))


def test_raising_a_masked_unit_never_lowers_the_score():
    acts = random_acts(30, seed=8)
    reference = build(acts)
    probe = random_acts(10, seed=9)
    before = {formula: reference.score(probe, formula=formula) for formula in ("overlap", "count")}
    masked_units = reference.masks["conv"].flatten().nonzero().squeeze(1)
    for unit in masked_units[:10].tolist():
        raised = {name: value.clone() for name, value in probe.items()}
        raised["conv"].view(10, -1)[:, unit] += 5.0
        for formula, scores in before.items():
            assert (reference.score(raised, formula=formula) >= scores).all()


def test_float32_activations_compare_exactly_with_the_float64_threshold():
    reference = build({"layer": torch.tensor([[0.3, 0.2]], dtype=torch.float64)})
    threshold = reference.thresholds[
        "layer"
    ]  # 0.15 in float64, between two float32 values; both units masked
    below = torch.tensor(threshold, dtype=torch.float32)
    below = below if float(below) < threshold else torch.nextafter(below, torch.tensor(0.0))
    just_below = {"layer": torch.tensor([[below.item(), 1.0]], dtype=torch.float32)}
    just_above = {
        "layer": torch.tensor(
            [[torch.nextafter(below, torch.tensor(1.0)).item(), 1.0]], dtype=torch.float32
        )
    }
    as_float64 = {"layer": just_below["layer"].double()}
    assert (
        reference.score(just_below).item()
        == reference.score(as_float64).item()
        == pytest.approx(math.log(2 / 3))
    )
    assert reference.score(just_above).item() == 0.0


def test_degenerate_layer_is_skipped_with_warning_and_metadata(caplog):
    acts = random_acts(5, seed=10)
    acts["dead"] = torch.zeros(5, 3)
    with caplog.at_level("WARNING"):
        reference = build(acts)
    assert reference.metadata["skipped_layers"] == ["dead"]
    assert "dead" in caplog.text
    assert "dead" not in reference.layer_terms(acts)
    without_dead = build({name: value for name, value in acts.items() if name != "dead"})
    assert torch.equal(
        reference.score(acts), without_dead.score({n: v for n, v in acts.items() if n != "dead"})
    )


def test_save_and_load_round_trip(tmp_path):
    acts = random_acts(12, seed=11)
    reference = (
        ReferenceBuilder(threshold_ratio=0.4, threshold_stat="l2", grid=8, model="toy")
        .update(acts)
        .finalize()
    )
    path = tmp_path / "nested" / "ref.pt"
    reference.save(str(path))
    loaded = Reference.load(str(path))
    assert loaded.metadata == reference.metadata
    assert torch.equal(loaded.score(acts, formula="count"), reference.score(acts, formula="count"))
    assert [p.name for p in path.parent.iterdir()] == ["ref.pt"]  # no temporary file left behind


def test_load_rejects_foreign_and_future_files(tmp_path):
    foreign = tmp_path / "weights.pt"
    torch.save({"model": {}}, foreign)
    with pytest.raises(ValueError, match="weights.pt"):
        Reference.load(str(foreign))
    pickled_object = tmp_path / "object.pt"
    torch.save({"metadata": {}, "mean": {}, "object": ReferenceBuilder()}, pickled_object)
    with pytest.raises(ValueError, match="object.pt is not a reference file") as refused:
        Reference.load(str(pickled_object))
    assert "weights_only=False" not in str(refused.value) and refused.value.__cause__ is None
    text = tmp_path / "notes.pt"
    text.write_text("not a tensor file")
    with pytest.raises(ValueError, match="notes.pt is not a reference file"):
        Reference.load(str(text))
    reference = build(random_acts(3, seed=12))
    future = tmp_path / "future.pt"
    torch.save(
        {"metadata": dict(reference.metadata, format_version=99), "mean": reference.mean}, future
    )
    with pytest.raises(ValueError, match="future.pt.*version 99"):
        Reference.load(str(future))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda acts: {"conv": acts["conv"]}, "'fc' is missing"),
        (lambda acts: dict(acts, extra=acts["fc"]), "'extra' is not in the reference"),
        (lambda acts: dict(acts, fc=acts["fc"][:, :6]), "'fc' has per-image shape \\(6,\\)"),
    ],
)
def test_mismatched_activations_name_the_layer(change, message):
    acts = random_acts(4, seed=13)
    reference = build(acts)
    with pytest.raises(ValueError, match=message):
        reference.score(change(acts))


def test_reference_refuses_other_grid_or_model():
    reference = (
        ReferenceBuilder(grid=8, model="vgg16@iter60000").update(random_acts(3, seed=14)).finalize()
    )
    reference.check_matches(grid=8, model="vgg16@iter60000")
    with pytest.raises(ValueError, match="grid=8.*grid=4"):
        reference.check_matches(grid=4)
    with pytest.raises(ValueError, match="model"):
        reference.check_matches(model="resnet50")


def test_non_finite_activations_name_image_and_layer():
    acts = random_acts(4, seed=15)
    acts["fc"][2, 3] = float("nan")
    with pytest.raises(ValueError, match="layer 'fc' for image 'img_c'"):
        ReferenceBuilder().update(acts, image_ids=["img_a", "img_b", "img_c", "img_d"])
    clean = random_acts(4, seed=16)
    reference = build(clean)
    clean["conv"][1, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="layer 'conv' for image #1"):
        reference.score(clean)
    clean["conv"][1, 0, 0, 0], clean["conv"][3, 0, 0, 0] = (
        float("inf"),
        float("-inf"),
    )  # the sum is NaN, not inf
    with pytest.raises(ValueError, match="layer 'conv' for image #1"):
        reference.score(clean)


def test_finite_activations_whose_sum_overflows_are_accepted():
    acts = random_acts(4, seed=17)
    acts["fc"][:, :2] = 3e38  # every unit finite in float32, their sum is not
    assert not torch.isfinite(acts["fc"].sum())
    scores = build(acts).score(acts)
    assert torch.isfinite(scores).all()


@pytest.mark.parametrize("ratio", [0.0, -0.5, 1.5])
def test_threshold_ratio_outside_unit_interval_is_refused(ratio):
    with pytest.raises(ValueError, match="threshold_ratio"):
        ReferenceBuilder(threshold_ratio=ratio)


def test_unknown_settings_are_refused():
    with pytest.raises(ValueError, match="threshold_stat"):
        ReferenceBuilder(threshold_stat="median")
    reference = build(random_acts(3, seed=17))
    with pytest.raises(ValueError, match="formula"):
        reference.score(random_acts(2, seed=18), formula="sum")
    with pytest.raises(ValueError, match="empty"):
        ReferenceBuilder().finalize()


def test_merge_refuses_other_settings_or_shapes():
    with pytest.raises(ValueError, match="different threshold"):
        ReferenceBuilder(threshold_ratio=0.5).merge(ReferenceBuilder(threshold_ratio=0.6))
    with pytest.raises(ValueError, match="'fc'"):
        ReferenceBuilder().update(random_acts(2, seed=19)).merge(
            ReferenceBuilder().update(
                random_acts(2, seed=20, shapes={"conv": (4, 5, 5), "fc": (3,)})
            )
        )


def test_vgg16_batch_of_64_scores_like_one_by_one():
    """Torchvision VGG16 (13 conv+ReLU layers), grid=0, 64 random 3x32x32 images: batch vs one by one.

    Computed in float64, where batched and single convolutions agree to ~1e-15 on any CPU, so no unit
    can cross its threshold between the two paths. In float32 they differ by ~1e-7, which moves a unit
    that sits on its threshold (one unit moves a term by log((O+1)/O)) on some CPUs and not others.
    Padded batches of mixed sizes are checked on a padding-neutral net in test_recorder.py: VGG16's
    stride-1 convolutions carry border pixels into the padding, so they are not padding-neutral.
    """
    torch.manual_seed(0)
    features = torchvision.models.vgg16().features.double().eval()
    layers = [
        name for name, module in features.named_modules() if isinstance(module, torch.nn.ReLU)
    ]
    images = torch.rand(64, 3, 32, 32, dtype=torch.float64)
    recorder = ActivationRecorder(features, layers, grid=0)
    with torch.inference_mode(), recorder:
        features(images)
    batch_acts = recorder.pop()
    reference = ReferenceBuilder().update(batch_acts).finalize()
    with torch.inference_mode(), recorder:
        for image in images:
            features(image.unsqueeze(0))
    single_acts = recorder.pop()
    assert len(layers) == 13 and not reference.metadata["skipped_layers"]
    assert all(acts.dtype == torch.float64 for acts in batch_acts.values())
    batch_scores, single_scores = reference.score(batch_acts), reference.score(single_acts)
    assert batch_scores.std() > 0  # the images are told apart
    assert torch.equal(batch_scores, single_scores)
