"""Resumable scoring: the scoring pass's per-image records, written in shards as it goes.

The unlabelled images, in dataset order, are cut into shards of ``IMAGESCORE.SCORE_SHARD_SIZE``
images; shard ``k`` holds images ``[k * size, (k + 1) * size)``. Each process scores whole shards
(the unfinished ones, dealt round-robin) and writes each one, atomically, the moment its last image
is scored: a killed run loses at most one shard per process. A run that finds finished shards in
its folder reuses them and scores only the rest, so its CSV and JSON equal an uninterrupted run's.

A shard is a JSON file (Python's ``json``: floats round-trip exactly; NaN is written as ``NaN``)
that holds, per image, only the :class:`~imagescore_det.structures.ScoredImage` fields (scores,
per-layer terms, detections above the lowest threshold in use), never activations, plus the
*fingerprint* of what produced it: the scoring config, a SHA-256 of the model's weights as loaded,
a digest of the references it was scored against, the dataset names and a SHA-256 of their image
ids and files. A shard whose fingerprint differs, that cannot be parsed (truncated, damaged), or
whose images are not the dataset's images at its position is refused with an error naming the
file; it is never mixed in.

Pure Python and PyTorch: no Detectron2 here (the caller passes the config as a dict).
"""

import dataclasses
import hashlib
import json
import logging
import os
import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from ..structures import ScoredImage
from ..utils.io import atomic_write

__all__ = [
    "SHARD_FORMAT",
    "ShardError",
    "state_dict_sha256",
    "reference_digest",
    "image_list_sha256",
    "ShardStore",
]

logger = logging.getLogger(__name__)

#: The "format" entry of every shard file; bumped when the layout changes.
SHARD_FORMAT = "imagescore_det scoring shard v1"
_NAME = re.compile(r"^shard_(\d{6})\.json$")


class ShardError(ValueError):
    """A shard that must not be reused: from another run, truncated, or not the dataset's images."""


def state_dict_sha256(module: torch.nn.Module) -> str:
    """SHA-256 of every parameter and buffer of ``module`` (names, dtypes, shapes, bytes), as loaded."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(("%s|%s|%s|" % (name, tensor.dtype, tuple(tensor.shape))).encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def reference_digest(reference) -> str:
    """SHA-256 of a ``Reference`` (mean maps and metadata except the model's description) or of a
    ``ClassReferences`` (each class's, with the class names): equal references, equal digests."""
    digest = hashlib.sha256()
    if hasattr(reference, "references"):  # ClassReferences
        digest.update(json.dumps([reference.mode, list(reference.class_names)]).encode())
        for c, ref in sorted(reference.references.items()):
            digest.update(("%d:%s" % (c, reference_digest(ref))).encode())
        return digest.hexdigest()
    metadata = {key: value for key, value in reference.metadata.items() if key != "model"}
    digest.update(json.dumps(metadata, sort_keys=True, default=str).encode())
    for name in sorted(reference.mean):
        mean = reference.mean[name].detach().to("cpu", torch.float64).contiguous().reshape(-1)
        digest.update(name.encode() + mean.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def image_list_sha256(images: Sequence[Tuple[object, str]]) -> str:
    """SHA-256 of the (image id, file name) pairs, in order."""
    return hashlib.sha256(json.dumps([[i, f] for i, f in images]).encode()).hexdigest()


def _normalised(value):
    """``value`` as JSON reads it back (tuples become lists): fingerprints compare after a round trip."""
    return json.loads(json.dumps(value))


def _differences(found: Mapping, wanted: Mapping, prefix: str = "") -> List[str]:
    """Dotted keys whose values differ between two fingerprints."""
    keys = []
    for key in sorted(set(found) | set(wanted)):
        a, b = found.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _differences(a, b, prefix + key + ".")
        elif a != b:
            keys.append(prefix + key)
    return keys


class ShardStore:
    """The shard files of one scoring run in ``directory``.

    Args:
        directory: the run's shard folder (created when the first shard is written).
        fingerprint: JSON-able description of what produces the records (see module docstring).
        images: ``(image_id, file_name)`` of every unlabelled image, in dataset order.
        shard_size: images per shard (> 0).
    """

    def __init__(
        self,
        directory: str,
        fingerprint: Mapping,
        images: Sequence[Tuple[object, str]],
        shard_size: int,
    ):
        if int(shard_size) != shard_size or shard_size < 1:
            raise ValueError("the shard size must be an integer >= 1, got %r" % (shard_size,))
        self.directory = directory
        self.images = [(image_id, file_name) for image_id, file_name in images]
        self.shard_size = int(shard_size)
        self.fingerprint = _normalised(
            dict(
                fingerprint,
                num_images=len(self.images),
                image_list_sha256=image_list_sha256(self.images),
                shard_size=self.shard_size,
            )
        )

    @property
    def num_shards(self) -> int:
        return -(-len(self.images) // self.shard_size)

    def bounds(self, shard: int) -> Tuple[int, int]:
        """``[start, stop)``: the dataset positions of shard ``shard``'s images."""
        start = shard * self.shard_size
        return start, min(start + self.shard_size, len(self.images))

    def path(self, shard: int) -> str:
        return os.path.join(self.directory, "shard_%06d.json" % shard)

    def write(self, shard: int, images: Sequence[ScoredImage]) -> str:
        """Write shard ``shard`` (its images, in order) atomically; returns its path."""
        start, stop = self.bounds(shard)
        expected = self.images[start:stop]
        got = [(image.image_id, image.file_name) for image in images]
        if _normalised(got) != _normalised(expected):
            raise ValueError(
                "shard %d must hold dataset images %d-%d in order; got other images"
                % (shard, start, stop - 1)
            )
        payload = {
            "format": SHARD_FORMAT,
            "fingerprint": self.fingerprint,
            "shard": shard,
            "start": start,
            "stop": stop,
            "images": [dataclasses.asdict(image) for image in images],
        }
        path = self.path(shard)
        with atomic_write(path) as f:
            json.dump(payload, f)
        return path

    def read(self, path: str) -> Tuple[int, List[ScoredImage]]:
        """Shard index and images of the file ``path``; :class:`ShardError` unless it belongs to this run."""
        try:
            with open(path) as f:
                payload = json.load(f)
        except (
            OSError,
            ValueError,
        ) as error:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise ShardError(
                "refusing scoring shard %s: it cannot be read (truncated or damaged? %s: %s); "
                "delete it to score its images again" % (path, type(error).__name__, error)
            ) from None
        if not isinstance(payload, dict) or payload.get("format") != SHARD_FORMAT:
            raise ShardError(
                "refusing scoring shard %s: it is not a %r file" % (path, SHARD_FORMAT)
            )
        differ = _differences(payload.get("fingerprint") or {}, self.fingerprint)
        if differ:
            raise ShardError(
                "refusing scoring shard %s: it was written by another scoring run (its fingerprint "
                "differs in %s), so its records are not this run's; delete %s or score into another "
                "output folder" % (path, ", ".join(differ[:8]), self.directory)
            )
        shard = payload.get("shard")
        match = _NAME.match(os.path.basename(path))
        if not isinstance(shard, int) or not match or int(match.group(1)) != shard:
            raise ShardError("refusing scoring shard %s: its name and content disagree" % path)
        start, stop = self.bounds(shard)
        try:
            images = [ScoredImage(**record) for record in payload["images"]]
        except (KeyError, TypeError) as error:
            raise ShardError(
                "refusing scoring shard %s: its image records are damaged (%s)" % (path, error)
            ) from None
        got = _normalised([(image.image_id, image.file_name) for image in images])
        if (payload.get("start"), payload.get("stop")) != (start, stop) or got != _normalised(
            self.images[start:stop]
        ):
            raise ShardError(
                "refusing scoring shard %s: it does not hold dataset images %d-%d in order"
                % (path, start, stop - 1)
            )
        return shard, images

    def finished(self) -> Dict[int, List[ScoredImage]]:
        """Every finished shard in the folder, checked: ``{shard: images}``; a bad one raises ShardError.

        Temporary files of an interrupted write (``.tmp-*``) are ignored: they were never renamed
        into place, so nothing half-written is read.
        """
        if not os.path.isdir(self.directory):
            return {}
        found = {}
        for name in sorted(os.listdir(self.directory)):
            if name.startswith(".tmp-"):
                continue
            path = os.path.join(self.directory, name)
            if not _NAME.match(name):
                continue
            shard, images = self.read(path)
            if shard >= self.num_shards:
                raise ShardError(
                    "refusing scoring shard %s: the dataset has only %d shards"
                    % (path, self.num_shards)
                )
            found[shard] = images
        return found


def describe_reuse(store: Optional[ShardStore], reused: Mapping[int, Sequence]) -> str:
    """The log line of what a run reuses."""
    count = sum(len(images) for images in reused.values())
    total = len(store.images)
    return "Reusing %d of %d images from %d finished shard(s) in %s; scoring the other %d" % (
        count,
        total,
        len(reused),
        store.directory,
        total - count,
    )
