"""Per-class references in one container: the box mode of detection scores each box against its class.

A :class:`ClassReferences` holds one :class:`~.reference.Reference` per class, built from a dict
of per-class :class:`~.reference.ReferenceBuilder` (as the classification mode builds them), and
saves them in one file that records the score mode and the class names, so that a file built for
other classes or another mode refuses to load where it does not belong.
"""

import math
from typing import Mapping, Optional, Sequence

import torch

from ..utils.io import atomic_write
from . import constants
from .reference import Activations, Reference, ReferenceBuilder

__all__ = ["ClassReferences"]

#: Marks a file written by :meth:`ClassReferences.save` (a single Reference's file has no such key).
CONTAINER_KIND = "imagescore_det class references"


class ClassReferences:
    """``{class index: Reference}`` plus the class names and the score mode they serve.

    Classes without a reference (no labelled example) are allowed; their rows score
    :attr:`lowest_score`, below anything a class with a reference can give, so they rank last.
    ``truth_scores`` (float64 [B] or None) are the labelled set's own ground-truth boxes scored
    against their classes' references, where a pass measured them: what the box filter calibrates
    its threshold on. They travel in the saved file.
    """

    def __init__(
        self,
        references: Mapping[int, Reference],
        class_names: Sequence[str],
        *,
        mode: str,
        truth_scores: Optional[torch.Tensor] = None,
    ):
        self.references = {int(c): ref for c, ref in sorted(references.items())}
        self.truth_scores = (
            None if truth_scores is None else torch.as_tensor(truth_scores, dtype=torch.float64)
        )
        self.class_names = list(class_names)
        self.mode = str(mode)
        outside = [c for c in self.references if not 0 <= c < len(self.class_names)]
        if outside:
            raise ValueError(
                "class %d has a reference but there are only %d class names"
                % (outside[0], len(self.class_names))
            )
        if not self.references:
            raise ValueError(
                "no class has a reference: the labelled set gave no example of any class"
            )
        layers = {tuple(ref.layers) for ref in self.references.values()}
        if len(layers) != 1:
            raise ValueError(
                "per-class references were built from different layers: %s" % sorted(layers)
            )

    @classmethod
    def from_builders(
        cls, builders: Mapping[int, ReferenceBuilder], class_names: Sequence[str], *, mode: str
    ) -> "ClassReferences":
        """Finalize every builder that saw at least one example; classes without any get no reference."""
        return cls(
            {c: b.finalize() for c, b in builders.items() if b.num_images}, class_names, mode=mode
        )

    @property
    def layers(self):
        return next(iter(self.references.values())).layers

    @property
    def metadata(self) -> dict:
        """What a log line or a pseudo-label file's info block needs: mode, classes, examples per class."""
        return {
            "mode": self.mode,
            "class_names": self.class_names,
            "layers": self.layers,
            "num_images": sum(ref.metadata["num_images"] for ref in self.references.values()),
            "examples_per_class": {
                self.class_names[c]: ref.metadata["num_images"]
                for c, ref in self.references.items()
            },
        }

    @property
    def lowest_score(self) -> float:
        """One less than the lowest score any class's reference can give (no unit on anywhere)."""
        return (
            min(
                sum(-math.log1p(k) for k in ref.unit_counts.values())
                for ref in self.references.values()
            )
            - 1.0
        )

    def score(
        self, acts: Activations, classes: Sequence[int], formula: str = constants.FORMULA
    ) -> torch.Tensor:
        """Score row i of ``acts`` against the reference of ``classes[i]``; float64 [N], higher is better.

        Each row's score depends on that row alone (the core score is per row), so a box scores the
        same whatever else is in its batch.
        """
        classes = torch.as_tensor(list(classes), dtype=torch.int64)
        num_rows = len(next(iter(acts.values()))) if acts else 0
        if len(classes) != num_rows:
            raise ValueError("got %d classes for %d rows of activations" % (len(classes), num_rows))
        scores = torch.full((num_rows,), self.lowest_score, dtype=torch.float64)
        for c in classes.unique().tolist():
            if c not in self.references:
                continue
            rows = (classes == c).nonzero().squeeze(1)
            scores[rows] = self.references[c].score(
                {name: act[rows] for name, act in acts.items()}, formula
            )
        return scores

    def state_dict(self) -> dict:
        """Every reference, the mode and the class names (tensors and plain types): what :meth:`save`
        writes and a checkpoint can hold; :meth:`from_state_dict` reads it back."""
        return {
            "kind": CONTAINER_KIND,
            "format_version": constants.REFERENCE_FORMAT_VERSION,
            "mode": self.mode,
            "class_names": self.class_names,
            "references": {c: ref.state_dict() for c, ref in self.references.items()},
            "truth_scores": self.truth_scores,
        }

    def save(self, path: str) -> None:
        """Write every reference, the mode and the class names in one file, atomically."""
        with atomic_write(path, "wb") as f:
            torch.save(self.state_dict(), f)

    @classmethod
    def load(
        cls, path: str, *, mode: Optional[str] = None, class_names: Optional[Sequence[str]] = None
    ) -> "ClassReferences":
        """Read a file written by :meth:`save`; ``mode`` and ``class_names``, when given, must match it."""
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as error:
            raise ValueError(
                "%s is not a class-reference file written by ClassReferences.save: %s"
                % (path, error)
            ) from error
        return cls.from_state_dict(payload, path, mode=mode, class_names=class_names)

    @classmethod
    def from_state_dict(
        cls,
        payload,
        source: str = "the state dict",
        *,
        mode: Optional[str] = None,
        class_names: Optional[Sequence[str]] = None,
    ) -> "ClassReferences":
        """The references of :meth:`state_dict`'s ``payload``, checked as :meth:`load` checks a file."""
        if not isinstance(payload, dict) or payload.get("kind") != CONTAINER_KIND:
            raise ValueError(
                "%s is not a class-reference file written by ClassReferences.save" % source
            )
        if payload["format_version"] != constants.REFERENCE_FORMAT_VERSION:
            raise ValueError(
                "%s has format version %r; this code reads version %d"
                % (source, payload["format_version"], constants.REFERENCE_FORMAT_VERSION)
            )
        if mode is not None and payload["mode"] != mode:
            raise ValueError(
                "%s holds references for score mode %r, not %r" % (source, payload["mode"], mode)
            )
        if class_names is not None and list(payload["class_names"]) != list(class_names):
            raise ValueError(
                "%s was built for classes %s, not %s"
                % (source, payload["class_names"], list(class_names))
            )
        references = {
            c: Reference(entry["mean"], entry["metadata"])
            for c, entry in payload["references"].items()
        }
        return cls(
            references,
            payload["class_names"],
            mode=payload["mode"],
            truth_scores=payload.get("truth_scores"),
        )
