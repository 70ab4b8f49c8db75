"""tools/score_voc.py in shards on a tiny synthetic set: interrupted after the first shard, rerun,
same CSV and JSON as an uninterrupted run; shards of other weights, or truncated, are refused."""

import json
import logging
import os

import pytest
import torch

pytest.importorskip("detectron2")
pytestmark = pytest.mark.detectron2

from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from helpers import DEMO_CONFIG, TINY_OPTS, load_tool  # noqa: E402

from imagescore_det import build_config  # noqa: E402
from imagescore_det.detection.shards import ShardError, ShardStore  # noqa: E402

#: The one tiny setup, scored in shards of 3 images.
OPTS = TINY_OPTS + ["IMAGESCORE.SCORE_SHARD_SIZE", "3"]
CONFIG = DEMO_CONFIG
score_voc = load_tool("score_voc")


@pytest.fixture(scope="module")
def weights(data_root, tmp_path_factory):
    """Two untrained detectors (seeds 0 and 1): enough to pseudo-label at threshold 0."""
    folder = tmp_path_factory.mktemp("weights")
    cfg = build_config(CONFIG, OPTS)
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        DetectionCheckpointer(build_model(cfg), save_dir=str(folder)).save("model_%d" % seed)
        paths.append(os.path.join(str(folder), "model_%d.pth" % seed))
    return paths


def run(weights_file, output_dir, *opts):
    argv = ["--config-file", CONFIG, "--weights", weights_file, "--output-dir", str(output_dir)]
    return score_voc.main(score_voc.argument_parser().parse_args(argv + OPTS + list(opts)))


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def log():
    handler = Lines()
    logger = logging.getLogger("imagescore_det")
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)


def outputs(folder):
    """The CSV's bytes and the JSON without its creation time and the folder it names."""
    with open(os.path.join(str(folder), "image_scores.csv"), "rb") as f:
        csv = f.read()
    with open(os.path.join(str(folder), "pseudo_labels.json")) as f:
        payload = json.load(f)
    del payload["info"]["date_created"], payload["info"]["reference_file"]
    return csv, payload


def test_interrupted_after_the_first_shard_then_rerun_equals_an_uninterrupted_run(
    weights, tmp_path, monkeypatch, log
):
    run(weights[0], tmp_path / "whole")
    assert sorted(os.listdir(tmp_path / "whole" / "scoring_shards")) == [
        "shard_%06d.json" % k for k in range(4)
    ]
    write = ShardStore.write

    def write_then_stop(self, shard, images):
        write(self, shard, images)
        raise KeyboardInterrupt("stopped after shard %d" % shard)

    monkeypatch.setattr(ShardStore, "write", write_then_stop)
    with pytest.raises(KeyboardInterrupt, match="after shard 0"):
        run(weights[0], tmp_path / "resumed")
    monkeypatch.setattr(ShardStore, "write", write)
    assert os.listdir(tmp_path / "resumed" / "scoring_shards") == ["shard_000000.json"]
    assert not os.path.exists(tmp_path / "resumed" / "image_scores.csv")
    del log[:]
    run(weights[0], tmp_path / "resumed")
    assert any(
        line.startswith("Reusing 3 of 10 images from 1 finished shard(s)")
        and line.endswith("scoring the other 7")
        for line in log
    ), log
    assert any(line.startswith("Scoring pass: 7 batches") for line in log), log
    assert outputs(tmp_path / "resumed") == outputs(tmp_path / "whole")
    # A rerun with everything finished scores nothing and writes the same again.
    del log[:]
    run(weights[0], tmp_path / "resumed")
    assert any(line.startswith("Reusing 10 of 10 images") for line in log), log
    assert not any(line.startswith("Scoring pass") for line in log)
    assert outputs(tmp_path / "resumed") == outputs(tmp_path / "whole")


def test_shards_of_other_weights_are_refused(weights, tmp_path):
    run(weights[0], tmp_path)
    with pytest.raises(ShardError) as error:
        run(weights[1], tmp_path)
    message = str(error.value)
    assert os.path.join(str(tmp_path), "scoring_shards", "shard_000000.json") in message
    assert "weights_sha256" in message and "references_sha256" in message


def test_shards_of_another_config_are_refused(weights, tmp_path):
    run(weights[0], tmp_path)
    with pytest.raises(ShardError, match="config.IMAGESCORE.PSEUDO_SCORE_THRESH"):
        run(weights[0], tmp_path, "IMAGESCORE.PSEUDO_SCORE_THRESH", "0.3")


def test_a_truncated_shard_is_refused(weights, tmp_path):
    run(weights[0], tmp_path)
    path = os.path.join(str(tmp_path), "scoring_shards", "shard_000002.json")
    with open(path, "r+") as f:
        f.truncate(os.path.getsize(path) - 10)
    with pytest.raises(ShardError, match="cannot be read") as error:
        run(weights[0], tmp_path)
    assert path in str(error.value)


def test_without_shards_nothing_is_written(weights, tmp_path):
    run(weights[0], tmp_path, "IMAGESCORE.SCORE_SHARD_SIZE", "0")
    assert not os.path.exists(tmp_path / "scoring_shards")
    assert os.path.getsize(tmp_path / "image_scores.csv") > 0
