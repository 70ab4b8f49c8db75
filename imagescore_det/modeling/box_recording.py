"""Record a detector's box-head activations for given boxes: the activations the box mode scores.

The detector's own box feature path (ROI pooler, then box head: ``box_pooler`` + ``box_head`` of
standard heads, ``pooler`` + ``res5`` of C4 heads) runs on the given boxes, while an
:class:`~imagescore_det.scoring.ActivationRecorder` hooks the named modules: one recorded row per
box, in the order the boxes were given. The box predictor and its post-processing do not run: box
mode needs features, not detections. Every box goes through ROI pooling and the box head on its
own rows, so a box's activations do not depend on the other boxes it is recorded with. The
backbone features come from the detector's own forward pass: :meth:`BoxRecorder.recording` keeps
the inputs of ``roi_heads`` while ``model(inputs)`` runs.
"""

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

import contextlib
from typing import Dict, List, Optional, Sequence

import torch
from detectron2.modeling.roi_heads import FastRCNNConvFCHead, Res5ROIHeads, StandardROIHeads
from detectron2.structures import Boxes

from imagescore_det.scoring import ActivationRecorder

__all__ = ["default_box_layers", "box_feature_modules", "to_input_boxes", "BoxRecorder"]


def box_feature_modules(roi_heads: torch.nn.Module) -> List[str]:
    """Names of the ROI pooler and the box head inside ``roi_heads``: the path a box's features take."""
    if isinstance(roi_heads, Res5ROIHeads):
        return ["pooler", "res5"]
    if isinstance(roi_heads, StandardROIHeads) and isinstance(roi_heads.box_head, torch.nn.Module):
        return ["box_pooler", "box_head"]
    raise ValueError(
        "box mode records the box head of StandardROIHeads or Res5ROIHeads (and their subclasses), not %s"
        % type(roi_heads).__name__
    )


def default_box_layers(roi_heads: torch.nn.Module) -> List[str]:
    """Module names inside ``roi_heads`` recorded per box by default.

    C4 heads (:class:`Res5ROIHeads` and subclasses): the ROI-pooled map (``pooler``) and ``res5``.
    Standard heads with :class:`FastRCNNConvFCHead` (VGG16 fc6/fc7, FPN's two FC layers): the
    ROI-pooled map (``box_pooler``), each conv (with its ReLU) and each FC layer after its ReLU.
    """
    if isinstance(roi_heads, Res5ROIHeads):
        return box_feature_modules(roi_heads)
    if isinstance(roi_heads, StandardROIHeads) and isinstance(
        roi_heads.box_head, FastRCNNConvFCHead
    ):
        head = roi_heads.box_head
        activations = [
            "box_head." + name
            for name, _ in head.named_children()
            if name.startswith(("conv", "fc_relu"))
        ]
        return ["box_pooler"] + activations
    raise ValueError(
        "no default box-head layers for %s with a %s box head: set IMAGESCORE.BOX.LAYERS to module names "
        "inside model.roi_heads whose output has one row per box"
        % (type(roi_heads).__name__, type(getattr(roi_heads, "box_head", None)).__name__)
    )


def to_input_boxes(boxes, record: Dict, input_size: Sequence[int]) -> torch.Tensor:
    """XYXY boxes in the original image's pixels -> the resized input's pixels.

    The same scaling Detectron2's ``ResizeTransform.apply_box`` gives training boxes: x by
    ``input width / width``, y by ``input height / height`` (``record`` holds the original size).
    """
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    scale_y, scale_x = (
        input_size[0] / float(record["height"]),
        input_size[1] / float(record["width"]),
    )
    return boxes * boxes.new_tensor([scale_x, scale_y, scale_x, scale_y])


class BoxRecorder:
    """Record ``layers`` of ``model.roi_heads`` for given boxes.

    Args:
        model: a Detectron2 R-CNN (``roi_heads`` with a box head), unwrapped from DDP.
        layers: module names inside ``model.roi_heads``, on its box feature path
            (:func:`box_feature_modules`); empty = :func:`default_box_layers`.
    """

    def __init__(self, model: torch.nn.Module, layers: Sequence[str] = ()):
        self.roi_heads = model.roi_heads
        if getattr(self.roi_heads, "mask_on", False) or getattr(
            self.roi_heads, "keypoint_on", False
        ):
            raise ValueError(
                "box mode records box heads only: MODEL.MASK_ON and MODEL.KEYPOINT_ON must be off"
            )
        self.layers = list(layers) or default_box_layers(self.roi_heads)
        path = box_feature_modules(self.roi_heads)
        outside = [name for name in self.layers if name.split(".")[0] not in path]
        if outside:
            raise ValueError(
                "IMAGESCORE.BOX.LAYERS %s are not on the box feature path (modules under %s of model.roi_heads)"
                % (outside, ", ".join(path))
            )
        try:
            self._recorder = ActivationRecorder(
                self.roi_heads, self.layers, grid=0
            )  # all ROIs share one size
        except ValueError as error:
            raise ValueError("IMAGESCORE.BOX.LAYERS: %s" % error) from error
        self._captured: Optional[tuple] = None

    @contextlib.contextmanager
    def recording(self, inputs=None):
        """Inside the block, each ``roi_heads`` call keeps its image list and features for :meth:`record`."""

        def keep(module, args, kwargs):
            images = args[0] if args else kwargs["images"]
            features = args[1] if len(args) > 1 else kwargs["features"]
            self._captured = (images, features)

        handle = self.roi_heads.register_forward_pre_hook(keep, with_kwargs=True)
        try:
            yield self
        finally:
            handle.remove()

    def _captured_batch(self):
        if self._captured is None:
            raise RuntimeError(
                "no forward pass was captured: run model(inputs) inside BoxRecorder.recording()"
            )
        return self._captured

    @property
    def input_sizes(self) -> List[tuple]:
        """(height, width) of each resized input image of the last captured forward."""
        return [tuple(size) for size in self._captured_batch()[0].image_sizes]

    def record(self, boxes: Sequence[torch.Tensor]) -> Optional[Dict[str, torch.Tensor]]:
        """``{layer: [sum of boxes, ...]}`` for the boxes of each image (input-image XYXY), in order; None if no box."""
        images, features = self._captured_batch()
        if len(boxes) != len(images):
            raise ValueError(
                "got boxes for %d images, but the captured batch holds %d"
                % (len(boxes), len(images))
            )
        total = sum(len(b) for b in boxes)
        if total == 0:
            return None
        feature = next(iter(features.values()))
        boxes = [Boxes(b.to(device=feature.device, dtype=feature.dtype)) for b in boxes]
        pooler, head = (
            getattr(self.roi_heads, name) for name in box_feature_modules(self.roi_heads)
        )
        in_features = (
            self.roi_heads.in_features
            if isinstance(self.roi_heads, Res5ROIHeads)
            else self.roi_heads.box_in_features
        )
        with self._recorder:
            head(pooler([features[name] for name in in_features], boxes))
        acts = self._recorder.pop()
        rows = len(next(iter(acts.values())))
        if rows != total:
            raise ValueError(
                "the box head recorded %d rows for %d boxes: do IMAGESCORE.BOX.LAYERS run once per box?"
                % (rows, total)
            )
        return acts
