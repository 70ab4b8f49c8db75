"""Per-class references and alpha_c selection on real digits with a (briefly) trained small CNN."""

import copy
import dataclasses
import math
import os

import numpy as np
import pytest
import torch

from imagescore_det.classification import (
    Predictions,
    TrainingState,
    boost_alphas,
    build_class_references,
    build_model,
    load_classification_config,
    load_split,
    predict_and_score,
    recorded_layers,
    seed_everything,
    select_additional,
    train_epoch,
)
from imagescore_det.scoring import ActivationRecorder, ReferenceBuilder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU = torch.device("cpu")
ALPHAS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.3, 0.3, 0.25, 0.15, 1.0]


@pytest.fixture(scope="module")
def trained():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    split = load_split(
        load_classification_config(os.path.join(REPO, "configs", "classification", "digits.yaml"))
    )
    seed_everything(0)
    model = build_model("small_cnn", split.num_classes, 1)
    state = TrainingState.create(model, lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(2):
        train_epoch(
            state,
            [split.labelled.images],
            [split.labelled.labels],
            batch_size=64,
            generator=generator,
            device=CPU,
        )
    yield split, model, recorded_layers(model)
    torch.set_num_threads(threads)  # later modules keep the session's thread count


def references_and_predictions(split, model, layers, batch_size=256):
    references = build_class_references(
        model, layers, split.labelled, split.num_classes, batch_size=batch_size, device=CPU
    )
    return references, predict_and_score(
        model, layers, references, split.additional, batch_size=batch_size, device=CPU
    )


def test_class_reference_is_built_from_that_class_only_across_batches(trained):
    split, model, layers = trained
    references = build_class_references(
        model, layers, split.labelled, split.num_classes, batch_size=37, device=CPU
    )
    cls = 3
    images = split.labelled.images[split.labelled.labels == cls]
    recorder = ActivationRecorder(model, layers, grid=0)
    with torch.inference_mode(), recorder:
        model(images)
    direct = ReferenceBuilder(grid=0).update(recorder.pop()).finalize()
    assert references[cls].metadata["num_images"] == len(images)
    for layer in layers:
        assert torch.allclose(references[cls].mean[layer], direct.mean[layer], atol=1e-9)
    assert not torch.allclose(
        references[cls].mean[layers[-1]], references[cls + 1].mean[layers[-1]]
    )


def test_references_of_some_classes_pass_only_their_images_and_leave_other_scores_nan(trained):
    split, model, layers = trained
    full, full_predictions = references_and_predictions(split, model, layers)
    some = build_class_references(
        model, layers, split.labelled, split.num_classes, batch_size=256, device=CPU, classes=[5, 3]
    )
    assert (
        sorted(some) == [3, 5] and some[3].metadata["num_images"] == full[3].metadata["num_images"]
    )
    for layer in layers:  # other batches through the model: equal up to float rounding, as above
        assert torch.allclose(some[3].mean[layer], full[3].mean[layer], atol=1e-9)
    predictions = predict_and_score(
        model, layers, some, split.additional, batch_size=256, device=CPU
    )
    assert np.array_equal(predictions.labels, full_predictions.labels)
    assert np.array_equal(predictions.confidence, full_predictions.confidence)
    scored = np.isin(predictions.labels, [3, 5])
    assert scored.any() and not scored.all()
    assert np.isnan(predictions.scores[~scored]).all()
    assert np.allclose(predictions.scores[scored], full_predictions.scores[scored])
    none = predict_and_score(model, layers, {}, split.additional, batch_size=256, device=CPU)
    assert np.isnan(none.scores).all() and np.array_equal(none.labels, full_predictions.labels)


def test_class_without_labelled_images_is_refused(trained):
    split, model, layers = trained
    without_seven = split.labelled.subset(np.flatnonzero(split.labelled.labels.numpy() != 7))
    with pytest.raises(ValueError, match="class 7"):
        build_class_references(
            model, layers, without_seven, split.num_classes, batch_size=256, device=CPU
        )


def in_float64(split, model):
    """The same model and images in float64, where batch sizes change results by ~1e-15 on any CPU:
    no unit sits close enough to its threshold to flip (in float32 ~1e-7 can flip one on some CPUs)."""
    as64 = lambda part: dataclasses.replace(part, images=part.images.double())  # noqa: E731
    split64 = dataclasses.replace(
        split, labelled=as64(split.labelled), additional=as64(split.additional)
    )
    return split64, copy.deepcopy(model).double()


def test_predictions_score_each_image_against_its_predicted_class_independent_of_batching(trained):
    split, model, layers = trained
    split64, model64 = in_float64(split, model)
    _, large_batches = references_and_predictions(split64, model64, layers, batch_size=1000)
    _, small_batches = references_and_predictions(split64, model64, layers, batch_size=13)
    assert np.array_equal(large_batches.labels, small_batches.labels)
    assert np.array_equal(large_batches.scores, small_batches.scores)
    assert len(np.unique(large_batches.scores)) > 10  # the images are told apart
    references, predictions = references_and_predictions(split, model, layers, batch_size=1000)
    recorder = ActivationRecorder(model, layers, grid=0)
    with torch.inference_mode(), recorder:
        logits = model(split.additional.images[:5])
    acts = recorder.pop()
    for i in range(5):
        label = int(logits[i].argmax())
        one = {name: act[i : i + 1] for name, act in acts.items()}
        assert predictions.labels[i] == label
        assert predictions.scores[i] == pytest.approx(float(references[label].score(one)[0]))
        assert predictions.confidence[i] == pytest.approx(
            float(torch.softmax(logits[i], 0).max()), abs=1e-6
        )
    assert (predictions.scores <= 0).all() and (
        (predictions.confidence > 0.1) & (predictions.confidence <= 1)
    ).all()


def test_selection_is_deterministic_for_a_fixed_model_and_data(trained):
    split, model, layers = trained
    for mode in ("imagescore", "softmax"):
        first = select_additional(
            mode, references_and_predictions(split, model, layers)[1], ALPHAS, split.additional.ids
        )
        second = select_additional(
            mode, references_and_predictions(split, model, layers)[1], ALPHAS, split.additional.ids
        )
        assert first.keys() == second.keys()
        assert all(np.array_equal(first[c], second[c]) for c in first)


def test_per_class_counts_are_ceil_alpha_times_images_predicted_as_that_class(trained):
    split, model, layers = trained
    _, predictions = references_and_predictions(split, model, layers)
    for mode in ("imagescore", "softmax"):
        chosen = select_additional(mode, predictions, ALPHAS, split.additional.ids)
        for c, alpha in enumerate(ALPHAS):
            candidates = int((predictions.labels == c).sum())
            assert len(chosen[c]) == math.ceil(round(alpha * candidates, 9))
    # Rounding is ceil on the decimal value: 0.3 x 10 candidates adds exactly 3, 0.25 x 10 adds 3.
    ten = Predictions(np.zeros(10, np.int64), np.linspace(0.5, 0.9, 10), -np.arange(10.0))
    assert len(select_additional("imagescore", ten, [0.3], np.arange(10))[0]) == 3
    assert len(select_additional("softmax", ten, [0.25], np.arange(10))[0]) == 3


def test_softmax_and_imagescore_select_from_the_same_candidates(trained):
    split, model, layers = trained
    _, predictions = references_and_predictions(split, model, layers)
    by_score = select_additional("imagescore", predictions, ALPHAS, split.additional.ids)
    by_softmax = select_additional("softmax", predictions, ALPHAS, split.additional.ids)
    differs = False
    for c in range(split.num_classes):
        candidates = set(np.flatnonzero(predictions.labels == c).tolist())
        assert set(by_score[c].tolist()) <= candidates and set(by_softmax[c].tolist()) <= candidates
        assert len(by_score[c]) == len(by_softmax[c])
        rest = np.array(sorted(candidates - set(by_score[c].tolist())), dtype=np.int64)
        if len(rest) and len(by_score[c]):
            assert predictions.scores[by_score[c]].min() >= predictions.scores[rest].max()
        rest = np.array(sorted(candidates - set(by_softmax[c].tolist())), dtype=np.int64)
        if len(rest) and len(by_softmax[c]):
            assert predictions.confidence[by_softmax[c]].min() >= predictions.confidence[rest].max()
        differs |= set(by_score[c].tolist()) != set(by_softmax[c].tolist())
    assert differs, (
        "the two rankings chose identical images everywhere: the test would not tell them apart"
    )


def test_no_selection_and_boosted_alphas():
    predictions = Predictions(np.array([0, 1, 1, 2]), np.ones(4), np.zeros(4))
    assert all(
        len(v) == 0
        for v in select_additional("none", predictions, [0.5] * 3, np.arange(4)).values()
    )
    assert boost_alphas([0.2, 0.3, 0.4], 1) == [0.0, 0.3, 0.0]
    boosted = select_additional(
        "imagescore", predictions, boost_alphas([1.0, 1.0, 1.0], 1), np.arange(4)
    )
    assert [len(boosted[c]) for c in range(3)] == [0, 2, 0]
    only_class_one_scored = Predictions(
        np.array([0, 1, 1, 2]), np.ones(4), np.array([np.nan, -2.0, -1.0, np.nan])
    )
    boosted = select_additional(
        "imagescore", only_class_one_scored, boost_alphas([0.5, 0.5, 0.5], 1), np.arange(4)
    )
    assert boosted[1].tolist() == [2] and len(boosted[0]) == len(boosted[2]) == 0
    with pytest.raises(ValueError, match="selection mode"):
        select_additional("random", predictions, [0.5] * 3, np.arange(4))
