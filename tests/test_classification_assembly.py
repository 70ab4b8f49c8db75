"""Model assembly: claims, highest image score, base model fallback."""

import numpy as np
import pytest

from imagescore_det.classification import assemble_predictions


def test_image_claimed_by_two_models_takes_the_label_of_the_higher_score():
    # Three models boosted for classes 0, 1, 2; image 0 is claimed by models 0 and 1.
    predictions = np.array([[0, 2], [1, 2], [0, 1]])
    base = np.array([2, 0])
    assert assemble_predictions(predictions, np.array([[-1.0, 0], [-0.5, 0], [0, 0]]), base)[0] == 1
    assert assemble_predictions(predictions, np.array([[-0.2, 0], [-0.5, 0], [0, 0]]), base)[0] == 0


def test_unclaimed_image_takes_the_base_models_label():
    predictions = np.array(
        [[1, 0], [0, 1]]
    )  # model 0 says 1, model 1 says 0 for image 0: neither claims it
    labels = assemble_predictions(predictions, np.zeros((2, 2)), np.array([7, 7]))
    assert labels.tolist() == [
        7,
        0,
    ]  # image 1: model 0 claims class 0 (model 1 claims class 1 too, equal score -> first)


def test_single_claim_wins_over_base_and_boosted_classes_map_models_to_classes():
    predictions = np.array([[5, 3, 3], [9, 9, 5]])
    scores = np.array([[-3.0, -9.0, -1.0], [-0.1, -8.0, -0.5]])
    labels = assemble_predictions(predictions, scores, np.array([0, 0, 0]), boosted_classes=[3, 9])
    assert labels.tolist() == [9, 9, 3]  # image 1: claimed by both, model 1 scores higher (-8 > -9)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="match"):
        assemble_predictions(np.zeros((2, 3), int), np.zeros((2, 4)), np.zeros(3, int))
    with pytest.raises(ValueError, match="finite"):
        assemble_predictions(np.zeros((2, 3), int), np.full((2, 3), np.nan), np.zeros(3, int))


def test_scores_of_unclaimed_images_are_not_used():
    """A boosted model scores only the images it claims (its class's reference); the rest may be NaN."""
    predictions = np.array([[0, 1, 0], [1, 1, 0]])
    scores = np.array([[-1.0, np.nan, -2.0], [-0.5, -3.0, np.nan]])
    assert assemble_predictions(predictions, scores, np.array([7, 7, 7])).tolist() == [1, 1, 0]
