"""PseudoLabelTrainLoader on plain Python lists: what attaching a pseudo-labelled stream does to the labelled one."""

import pytest

pytest.importorskip("detectron2")
pytestmark = pytest.mark.detectron2

from imagescore_det.engine import PseudoLabelTrainLoader  # noqa: E402

LABELLED = [[("labelled", 2 * i), ("labelled", 2 * i + 1)] for i in range(6)]  # 6 batches of 2
PSEUDO = [[("pseudo", i)] for i in range(10)]


def labelled_items(batches):
    return [item for batch in batches for item in batch if item[0] == "labelled"]


@pytest.mark.parametrize("k", [0, 1, 4])
def test_attaching_after_k_batches_continues_the_labelled_stream_and_appends_pseudo_items(k):
    without = list(PseudoLabelTrainLoader(LABELLED))
    assert without == LABELLED

    loader = PseudoLabelTrainLoader(LABELLED)
    stream = iter(loader)  # the trainer keeps one iterator for the whole run
    first = [next(stream) for _ in range(k)]
    loader.attach_pseudo(PSEUDO)
    rest = list(stream)
    assert first == LABELLED[:k] and len(rest) == len(LABELLED) - k
    assert labelled_items(first + rest) == labelled_items(
        without
    )  # the same labelled items, in the same order
    for j, batch in enumerate(rest):
        assert (
            batch == LABELLED[k + j] + PSEUDO[j]
        )  # each labelled batch, then the next pseudo batch


def test_a_new_iterator_continues_too_and_detaching_or_replacing_behaves():
    loader = PseudoLabelTrainLoader(LABELLED)
    assert next(iter(loader)) == LABELLED[0]
    loader.attach_pseudo(PSEUDO)
    assert (
        next(iter(loader)) == LABELLED[1] + PSEUDO[0]
    )  # a fresh iterator: where the labelled stream was
    assert next(iter(loader)) == LABELLED[2] + PSEUDO[1]
    loader.attach_pseudo(None)  # detached: the labelled stream alone goes on
    assert next(iter(loader)) == LABELLED[3]
    loader.attach_pseudo(PSEUDO)  # a newly attached stream starts at its beginning
    assert next(iter(loader)) == LABELLED[4] + PSEUDO[0]
    replacement = [[("replacement", i)] for i in range(3)]
    loader.replace_labelled(replacement)  # read from its start, the pseudo stream going on
    assert loader.labelled is replacement
    assert list(loader) == [
        replacement[0] + PSEUDO[1],
        replacement[1] + PSEUDO[2],
        replacement[2] + PSEUDO[3],
    ]


def test_a_finite_pseudo_loader_starts_again_and_an_empty_one_is_refused():
    stream = PseudoLabelTrainLoader([[("l", i)] for i in range(5)])
    stream.attach_pseudo([[("p", 0)], [("p", 1)]])
    assert [batch[1] for batch in stream] == [("p", 0), ("p", 1), ("p", 0), ("p", 1), ("p", 0)]
    stream = PseudoLabelTrainLoader([[("l", 0)]])
    stream.attach_pseudo([])
    with pytest.raises(ValueError, match="yields no batch"):
        list(stream)
