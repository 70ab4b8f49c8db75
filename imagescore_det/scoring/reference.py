"""The reference of a labelled set and the image score measured against it (docs/method.md §1).

``ReferenceBuilder`` streams float64 sums over batches (memory independent of the set's
size) and combines shards exactly; ``Reference`` holds the mean maps, derives thresholds
and masks from them, scores images and saves itself with the metadata that guards its use.
"""

import logging
import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from ..utils.io import atomic_write
from . import constants

__all__ = ["ReferenceBuilder", "Reference", "all_reduce_builders"]

logger = logging.getLogger(__name__)

Activations = Mapping[str, torch.Tensor]


def _check_settings(threshold_ratio: float, threshold_stat: str) -> None:
    if not 0.0 < float(threshold_ratio) <= 1.0:
        raise ValueError("threshold_ratio must lie in (0, 1], got %r" % (threshold_ratio,))
    if threshold_stat not in constants.THRESHOLD_STATS:
        raise ValueError(
            "threshold_stat must be one of %s, got %r" % (constants.THRESHOLD_STATS, threshold_stat)
        )


def _describe_image(index: int, image_ids: Optional[Sequence]) -> str:
    return (
        "image %r" % (image_ids[index],)
        if image_ids is not None
        else "image #%d of the batch" % index
    )


def _per_image_shapes(
    acts: Activations, image_ids: Optional[Sequence]
) -> Tuple[Dict[str, Tuple[int, ...]], int]:
    """Validate a batch of activations: tensors, one row per image everywhere, all finite."""
    if not isinstance(acts, Mapping) or not acts:
        raise ValueError("activations must be a non-empty {layer name: tensor [N, ...]} mapping")
    shapes, counts = {}, set()
    for name, act in acts.items():
        if not torch.is_tensor(act) or act.dim() < 2 or not act.is_floating_point():
            raise ValueError(
                "activations of layer %r must be a float tensor [N, ...], got %r"
                % (name, getattr(act, "shape", act))
            )
        shapes[name] = tuple(act.shape[1:])
        counts.add(len(act))
    if len(counts) != 1:
        raise ValueError(
            "layers hold different numbers of images: %s" % {n: len(a) for n, a in acts.items()}
        )
    num_images = counts.pop()
    if image_ids is not None and len(image_ids) != num_images:
        raise ValueError("got %d image ids for %d images" % (len(image_ids), num_images))
    for name, act in acts.items():
        if bool(
            torch.isfinite(act.sum())
        ):  # one reduction: any NaN or inf unit makes the sum non-finite
            continue
        finite = torch.isfinite(act.flatten(1)).all(
            dim=1
        )  # the sum may also have overflowed: check each unit
        if not bool(finite.all()):
            bad = int((~finite).nonzero()[0])
            raise ValueError(
                "non-finite activation in layer %r for %s" % (name, _describe_image(bad, image_ids))
            )
    return shapes, num_images


def _first_difference(
    expected: Mapping[str, Tuple[int, ...]], got: Mapping[str, Tuple[int, ...]]
) -> Optional[str]:
    """Describe the first layer whose presence or per-image shape differs, or None."""
    for name, shape in expected.items():
        if name not in got:
            return "layer %r is missing from the activations" % name
        if tuple(got[name]) != tuple(shape):
            return "layer %r has per-image shape %s, expected %s" % (
                name,
                tuple(got[name]),
                tuple(shape),
            )
    extra = [name for name in got if name not in expected]
    return "layer %r is not in the reference" % extra[0] if extra else None


class ReferenceBuilder:
    """Accumulate a labelled set's activations into a :class:`Reference`.

    Args:
        threshold_ratio: rho in t[l] = rho * stat(mean[l]), in (0, 1].
        threshold_stat: "max" (the paper's L-infinity), "l1" (mean |x|) or "l2" (root mean square).
        grid: the recorder's grid, stored so that a reference refuses activations pooled otherwise.
        model: free-form description of the model (name, checkpoint), checked before scoring.
    """

    def __init__(
        self,
        threshold_ratio: float = constants.THRESHOLD_RATIO,
        threshold_stat: str = constants.THRESHOLD_STAT,
        *,
        grid: Optional[int] = None,
        model: Optional[str] = None,
    ):
        _check_settings(threshold_ratio, threshold_stat)
        self.threshold_ratio = float(threshold_ratio)
        self.threshold_stat = threshold_stat
        self.grid = grid
        self.model = model
        self.num_images = 0
        self._shapes: Optional[Dict[str, Tuple[int, ...]]] = None
        self._sums: Dict[str, torch.Tensor] = {}

    def update(self, acts: Activations, image_ids: Optional[Sequence] = None) -> "ReferenceBuilder":
        """Add one batch ``{layer: tensor [N, ...]}``; ``image_ids`` only name images in errors."""
        shapes, num_images = _per_image_shapes(acts, image_ids)
        self._adopt_shapes(shapes)
        for name, act in acts.items():
            self._sums[name] += act.sum(dim=0, dtype=torch.float64).cpu()
        self.num_images += num_images
        return self

    def merge(self, other: "ReferenceBuilder") -> "ReferenceBuilder":
        """Add the sums of a shard built apart; the result equals one build over both shards."""
        if (other.threshold_ratio, other.threshold_stat, other.grid, other.model) != (
            self.threshold_ratio,
            self.threshold_stat,
            self.grid,
            self.model,
        ):
            raise ValueError(
                "cannot merge builders with different threshold, grid or model settings"
            )
        if other._shapes is not None:
            self._adopt_shapes(other._shapes)
            for name, total in other._sums.items():
                self._sums[name] += total
        self.num_images += other.num_images
        return self

    def all_reduce(self, group=None) -> "ReferenceBuilder":
        """Combine every process's shard in place with ``torch.distributed``, so all ranks hold the total.

        Merged as :func:`all_reduce_builders` merges; ranks that saw no image take their layer
        shapes from the others.
        """
        total = all_reduce_builders({0: self}, group)[0]
        if total._shapes is None:
            raise ValueError("no process saw any image: the reference set is empty")
        self._shapes, self._sums, self.num_images = total._shapes, total._sums, total.num_images
        return self

    def finalize(self) -> "Reference":
        """Divide by the number of images and derive thresholds and masks."""
        if self._shapes is None or self.num_images == 0:
            raise ValueError("the reference set is empty: call update() with at least one image")
        mean = {name: total / self.num_images for name, total in self._sums.items()}
        metadata = {
            "format_version": constants.REFERENCE_FORMAT_VERSION,
            "layers": list(self._shapes),
            "shapes": {name: list(shape) for name, shape in self._shapes.items()},
            "grid": self.grid,
            "threshold_ratio": self.threshold_ratio,
            "threshold_stat": self.threshold_stat,
            "num_images": self.num_images,
            "model": self.model,
        }
        reference = Reference(mean, metadata)
        for name in reference.metadata["skipped_layers"]:
            logger.warning(
                "layer %r is never active in the reference set (max mean <= 0): skipped when scoring",
                name,
            )
        return reference

    def _adopt_shapes(self, shapes: Mapping[str, Tuple[int, ...]]) -> None:
        if self._shapes is None:
            self._shapes = dict(shapes)
            self._sums = {
                name: torch.zeros(shape, dtype=torch.float64) for name, shape in shapes.items()
            }
            return
        difference = _first_difference(self._shapes, shapes)
        if difference:
            raise ValueError("activations do not match the earlier batches: %s" % difference)


def all_reduce_builders(
    builders: Mapping[object, ReferenceBuilder], group=None
) -> Dict[object, ReferenceBuilder]:
    """``{key: builder}`` summed over every process of ``torch.distributed``: the one way shards merge.

    Shards are gathered as objects and merged in rank order, so any backend works (gloo on CPU,
    NCCL on GPU) and every rank ends with bit-identical sums. Every rank must pass the same keys.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            "merging builders across processes needs an initialised torch.distributed process group"
        )
    shards: List = [None] * dist.get_world_size(group)
    dist.all_gather_object(shards, dict(builders), group=group)
    totals = {}
    for key, builder in builders.items():
        totals[key] = ReferenceBuilder(
            builder.threshold_ratio, builder.threshold_stat, grid=builder.grid, model=builder.model
        )
        for shard in shards:
            totals[key].merge(shard[key])
    return totals


class Reference:
    """Mean activation maps of a labelled set, with the thresholds and masks derived from them.

    Scores are float64, higher is better. With formula "overlap" their range is (-inf, 0]: 0 means
    the image turns on every unit that the reference set has in common; "count" can exceed 0.
    """

    def __init__(self, mean: Mapping[str, torch.Tensor], metadata: Mapping):
        self.mean = {name: value.to(torch.float64) for name, value in mean.items()}
        self.metadata = dict(metadata)
        _check_settings(self.metadata["threshold_ratio"], self.metadata["threshold_stat"])
        self.thresholds: Dict[str, float] = {}
        self.masks: Dict[str, torch.Tensor] = {}
        self.unit_counts: Dict[str, int] = {}
        self._masked_units: Dict[str, torch.Tensor] = {}
        skipped = []
        for name, value in self.mean.items():
            if float(value.max()) <= 0.0:
                skipped.append(name)
                continue
            threshold = self.metadata["threshold_ratio"] * self._statistic(value)
            mask = value >= threshold
            self.thresholds[name] = threshold
            self.masks[name] = mask
            self.unit_counts[name] = int(mask.sum())
            self._masked_units[name] = mask.flatten().nonzero().squeeze(1)
        self.metadata["skipped_layers"] = skipped

    @property
    def layers(self) -> List[str]:
        """Every layer the reference was built with, skipped ones included."""
        return list(self.metadata["layers"])

    @property
    def scored_layers(self) -> List[str]:
        return [name for name in self.layers if name in self.thresholds]

    def _statistic(self, value: torch.Tensor) -> float:
        stat = self.metadata["threshold_stat"]
        if stat == "max":
            return float(value.max())
        if stat == "l1":
            return float(value.abs().mean())
        return float(value.pow(2).mean().sqrt())

    def check_matches(self, *, grid=None, model=None) -> None:
        """Refuse a scoring setup other than the one the reference was built for."""
        for key, wanted in (("grid", grid), ("model", model)):
            if (
                wanted is not None
                and self.metadata.get(key) is not None
                and wanted != self.metadata[key]
            ):
                raise ValueError(
                    "reference was built with %s=%r, but scoring uses %s=%r"
                    % (key, self.metadata[key], key, wanted)
                )

    def layer_terms(
        self,
        acts: Activations,
        formula: str = constants.FORMULA,
        image_ids: Optional[Sequence] = None,
    ) -> Dict[str, torch.Tensor]:
        """Per-layer terms log((hits + 1) / (K + 1)), float64 [N] each; they sum to :meth:`score`.

        ``formula="overlap"`` counts hits inside the reference mask; ``"count"`` counts every
        active unit, inside the mask or not (docs/method.md §1).
        """
        if formula not in constants.FORMULAS:
            raise ValueError("formula must be one of %s, got %r" % (constants.FORMULAS, formula))
        shapes, _ = _per_image_shapes(acts, image_ids)
        expected = {name: tuple(shape) for name, shape in self.metadata["shapes"].items()}
        difference = _first_difference(expected, shapes)
        if difference:
            raise ValueError("activations do not match the reference: %s" % difference)
        terms = {}
        for name in self.scored_layers:
            flat = acts[name].flatten(1)
            threshold = _threshold_for(self.thresholds[name], flat.dtype)
            if formula == "overlap":
                flat = flat.index_select(1, self._masked_units[name].to(flat.device))
            hits = (flat >= threshold).sum(dim=1).cpu().to(torch.float64)
            terms[name] = torch.log((hits + 1.0) / (self.unit_counts[name] + 1.0))
        return terms

    def score(
        self,
        acts: Activations,
        formula: str = constants.FORMULA,
        image_ids: Optional[Sequence] = None,
    ) -> torch.Tensor:
        """Image scores, float64 [N]; higher is better; (-inf, 0] with "overlap", "count" can exceed 0."""
        terms = self.layer_terms(acts, formula, image_ids)
        total = torch.zeros(len(next(iter(acts.values()))), dtype=torch.float64)
        for term in terms.values():
            total += term
        return total

    def state_dict(self) -> dict:
        """The mean maps and the metadata (tensors and plain types): what :meth:`save` writes and a
        checkpoint can hold; :meth:`from_state_dict` reads it back."""
        return {"metadata": self.metadata, "mean": self.mean}

    def save(self, path: str) -> None:
        """Write atomically (temporary file, then rename): a crash never leaves half a file."""
        with atomic_write(path, "wb") as f:
            torch.save(self.state_dict(), f)

    @classmethod
    def load(cls, path: str) -> "Reference":
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as error:
            # torch's own message advises weights_only=False, which would run the file's code: a
            # reference never needs that, so say only what the file is not.
            raise ValueError(
                "%s is not a reference file written by Reference.save (torch.load with weights_only=True "
                "refused it: %s)" % (path, type(error).__name__)
            ) from None
        return cls.from_state_dict(payload, path)

    @classmethod
    def from_state_dict(cls, payload, source: str = "the state dict") -> "Reference":
        """The reference of :meth:`state_dict`'s ``payload``, checked (``source`` names it in errors)."""
        if not isinstance(payload, dict) or not {"metadata", "mean"} <= set(payload):
            raise ValueError(
                "%s is not a reference file written by Reference.save (no metadata/mean)" % source
            )
        metadata = payload["metadata"]
        version = metadata.get("format_version")
        if version != constants.REFERENCE_FORMAT_VERSION:
            raise ValueError(
                "%s has reference format version %r; this code reads version %d"
                % (source, version, constants.REFERENCE_FORMAT_VERSION)
            )
        if list(payload["mean"]) != list(metadata["layers"]):
            raise ValueError(
                "%s is inconsistent: its mean maps and metadata list different layers" % source
            )
        return cls(payload["mean"], metadata)


def _threshold_for(threshold: float, dtype: torch.dtype):
    """The threshold in ``dtype`` that makes ``x >= t`` agree exactly with the float64 comparison.

    Comparing in the activations' own dtype avoids converting every unit to float64; rounding the
    threshold up to the next representable value keeps the comparison exact.
    """
    if dtype == torch.float64:
        return threshold
    rounded = torch.tensor(threshold, dtype=dtype)
    if float(rounded) < threshold:
        rounded = torch.nextafter(rounded, torch.tensor(math.inf, dtype=dtype))
    return rounded
