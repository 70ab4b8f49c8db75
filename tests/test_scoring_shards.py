"""ShardStore, the scoring pass's resumable records (no Detectron2): exact round trip, refusals."""

import json
import math
import os

import pytest
import torch

from imagescore_det.detection.shards import (
    ShardError,
    ShardStore,
    reference_digest,
    state_dict_sha256,
)
from imagescore_det.scoring import ReferenceBuilder
from imagescore_det.structures import ScoredImage

IMAGES = [("img_%d" % i, "/data/img_%d.jpg" % i) for i in range(7)]
FINGERPRINT = {"config": {"GRID": 4}, "weights_sha256": "a" * 64, "datasets": ["pool"]}


def scored(image_id, file_name, k):
    """A record with awkward floats (not short decimals), a NaN and a nested dict."""
    return ScoredImage(
        image_id,
        file_name,
        100 + k,
        80,
        boxes=[[1.0 / 3, 2.5, 40.123456789, 77.0]],
        classes=[k % 3],
        confidences=[0.1 + k / 7],
        mean_confidence=math.pi / (k + 1),
        ignore_boxes=[[0.0, 0.0, 1e-9, 2.0]],
        image_score=-k / 3,
        terms={"conv1": -k / 6, "conv2": -k / 6},
        box_scores=[-0.1 * k],
    )


def store(directory, fingerprint=FINGERPRINT, images=IMAGES, size=3):
    return ShardStore(str(directory), fingerprint, images, size)


def test_shards_cover_the_dataset_and_round_trip_exactly(tmp_path):
    s = store(tmp_path)
    assert s.num_shards == 3 and [s.bounds(k) for k in range(3)] == [(0, 3), (3, 6), (6, 7)]
    written = [scored(*IMAGES[i], i) for i in range(3)]
    written[1].image_score = math.nan
    s.write(0, written)
    found = store(tmp_path).finished()
    assert list(found) == [0]
    for a, b in zip(found[0], written):
        assert repr(a) == repr(b)  # every float bit for bit, NaN included


def test_write_refuses_images_out_of_place(tmp_path):
    with pytest.raises(ValueError, match="dataset images 0-2"):
        store(tmp_path).write(0, [scored(*IMAGES[i], i) for i in (0, 2, 1)])


def test_a_shard_of_other_weights_is_refused_naming_the_file(tmp_path):
    store(tmp_path).write(0, [scored(*IMAGES[i], i) for i in range(3)])
    other = dict(FINGERPRINT, weights_sha256="b" * 64)
    with pytest.raises(ShardError) as error:
        store(tmp_path, other).finished()
    message = str(error.value)
    assert os.path.join(str(tmp_path), "shard_000000.json") in message
    assert "weights_sha256" in message and "another scoring run" in message


@pytest.mark.parametrize(
    "change",
    [
        {"config": {"GRID": 8}},
        {"datasets": ["other_pool"]},
    ],
)
def test_a_shard_of_another_config_or_dataset_is_refused(tmp_path, change):
    store(tmp_path).write(0, [scored(*IMAGES[i], i) for i in range(3)])
    with pytest.raises(ShardError, match="another scoring run"):
        store(tmp_path, dict(FINGERPRINT, **change)).finished()


def test_other_images_or_shard_size_are_refused(tmp_path):
    store(tmp_path).write(0, [scored(*IMAGES[i], i) for i in range(3)])
    renamed = [("x", "/data/x.jpg")] + IMAGES[1:]
    with pytest.raises(ShardError, match="image_list_sha256"):
        store(tmp_path, images=renamed).finished()
    with pytest.raises(ShardError, match="shard_size"):
        store(tmp_path, size=2).finished()


def test_truncated_or_damaged_shards_are_refused_and_temporary_files_ignored(tmp_path):
    s = store(tmp_path)
    path = s.write(1, [scored(*IMAGES[i], i) for i in range(3, 6)])
    # An interrupted atomic write leaves only its temporary file: never read.
    with open(os.path.join(str(tmp_path), ".tmp-xyzshard_000002.json"), "w") as f:
        f.write('{"format": "imag')
    assert list(store(tmp_path).finished()) == [1]
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text[: len(text) // 2])
    with pytest.raises(ShardError, match="cannot be read .*truncated or damaged") as error:
        store(tmp_path).finished()
    assert path in str(error.value)
    payload = json.loads(text)
    payload["images"] = payload["images"][:2]  # valid JSON, an image short
    with open(path, "w") as f:
        json.dump(payload, f)
    with pytest.raises(ShardError, match="does not hold dataset images 3-5"):
        store(tmp_path).finished()
    payload = json.loads(text)
    del payload["images"][0]["image_score"], payload["images"][0]["file_name"]
    with open(path, "w") as f:
        json.dump(payload, f)
    with pytest.raises(ShardError, match="damaged"):
        store(tmp_path).finished()


def test_digests_tell_weights_and_references_apart():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    assert state_dict_sha256(a) == state_dict_sha256(a) != state_dict_sha256(b)
    acts = {"layer": torch.rand(4, 5, dtype=torch.float64)}
    one = ReferenceBuilder(model="one").update(acts).finalize()
    same = ReferenceBuilder(model="described otherwise").update(acts).finalize()
    other = ReferenceBuilder(model="one").update({"layer": acts["layer"] + 1e-12}).finalize()
    assert reference_digest(one) == reference_digest(same) != reference_digest(other)
