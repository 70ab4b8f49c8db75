"""RPN and ROI heads that do not teach what the teacher missed as background (docs/method.md §2 item 8).

A pseudo-labelled image lists only the teacher's confident detections. Inside :meth:`pseudo_mode`
(entered by :class:`ImageScoreRCNN` for its pseudo-labelled images only) the anchors and proposals
that Detectron2's matcher labels background (0) become ignore (-1), which Detectron2's samplers
skip: all of them (``ignore_unmatched``) or those overlapping an ignore box. Only the label step is
overridden; outside pseudo mode the heads are Detectron2's RPN, StandardROIHeads and Res5ROIHeads.
"""

import contextlib
import dataclasses
from typing import Iterator, List, Optional

import torch

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.modeling import PROPOSAL_GENERATOR_REGISTRY, ROI_HEADS_REGISTRY  # noqa: E402
from detectron2.modeling.proposal_generator import RPN  # noqa: E402
from detectron2.modeling.roi_heads import Res5ROIHeads, StandardROIHeads  # noqa: E402
from detectron2.structures import Boxes, pairwise_iou  # noqa: E402

__all__ = [
    "PseudoTargets",
    "PseudoLabelMixin",
    "ImageScoreRPN",
    "ImageScoreStandardROIHeads",
    "ImageScoreRes5ROIHeads",
]


@dataclasses.dataclass
class PseudoTargets:
    """What one pseudo-labelled image's background may not include.

    Attributes:
        ignore_unmatched: every anchor/proposal that matches no pseudo box is ignored.
        ignore_boxes: regions (XYXY, input-image pixels) whose overlapping boxes are ignored.
        ignore_iou_thresh: the IoU with an ignore box from which a box is ignored.
    """

    ignore_unmatched: bool
    ignore_boxes: Boxes
    ignore_iou_thresh: float

    def ignored(self, boxes: Boxes) -> torch.Tensor:
        """Bool mask over ``boxes``: which of them may not be background."""
        if self.ignore_unmatched:
            return torch.ones(len(boxes), dtype=torch.bool, device=boxes.device)
        if len(self.ignore_boxes) == 0:
            return torch.zeros(len(boxes), dtype=torch.bool, device=boxes.device)
        iou = pairwise_iou(self.ignore_boxes.to(boxes.device), boxes)
        return iou.max(dim=0).values >= self.ignore_iou_thresh


class PseudoLabelMixin:
    """Pseudo mode for a head: per-image :class:`PseudoTargets` while the context is open.

    The head's label step computes one ignore mask per image and hands the masks, in image order,
    to Detectron2's per-image sampling step, which turns background into ignore where masked.
    """

    _pseudo_targets: Optional[List[PseudoTargets]] = None
    _pending_masks: Optional[Iterator[torch.Tensor]] = None

    @contextlib.contextmanager
    def pseudo_mode(self, targets: List[PseudoTargets]):
        """Treat the images of the next forward as pseudo-labelled, ``targets[i]`` for image i."""
        self._pseudo_targets = list(targets)
        try:
            yield self
        finally:
            self._pseudo_targets = None

    @contextlib.contextmanager
    def _masks_for_sampling(self, masks: List[torch.Tensor]):
        self._pending_masks = iter(masks)
        try:
            yield
        finally:
            self._pending_masks = None

    def _next_mask(self) -> Optional[torch.Tensor]:
        return None if self._pending_masks is None else next(self._pending_masks)


@PROPOSAL_GENERATOR_REGISTRY.register()
class ImageScoreRPN(PseudoLabelMixin, RPN):
    """Detectron2's RPN; in pseudo mode, background anchors that are masked become ignore."""

    @torch.jit.unused
    @torch.no_grad()
    def label_and_sample_anchors(self, anchors: List[Boxes], gt_instances):
        if self._pseudo_targets is None:
            return super().label_and_sample_anchors(anchors, gt_instances)
        all_anchors = Boxes.cat(anchors)
        masks = [targets.ignored(all_anchors) for targets in self._pseudo_targets]
        with self._masks_for_sampling(masks):
            return super().label_and_sample_anchors(anchors, gt_instances)

    def _subsample_labels(self, label: torch.Tensor) -> torch.Tensor:
        mask = self._next_mask()  # RPN calls this once per image, in image order
        if mask is not None:
            label = torch.where((label == 0) & mask, torch.full_like(label, -1), label)
        return super()._subsample_labels(label)


class PseudoROIHeadsMixin(PseudoLabelMixin):
    """ROI heads' pseudo mode: background proposals that are masked become ignore."""

    @torch.no_grad()
    def label_and_sample_proposals(self, proposals, targets):
        if self._pseudo_targets is None:
            return super().label_and_sample_proposals(proposals, targets)
        masks = []
        for proposals_i, targets_i, pseudo_i in zip(proposals, targets, self._pseudo_targets):
            mask = pseudo_i.ignored(proposals_i.proposal_boxes)
            if (
                self.proposal_append_gt
            ):  # the parent appends the gt boxes after the proposals: never ignored
                mask = torch.cat([mask, mask.new_zeros(len(targets_i))])
            masks.append(mask)
        with self._masks_for_sampling(masks):
            return super().label_and_sample_proposals(proposals, targets)

    def _sample_proposals(self, matched_idxs, matched_labels, gt_classes):
        mask = self._next_mask()  # called once per image, in image order
        if mask is None:
            return super()._sample_proposals(matched_idxs, matched_labels, gt_classes)
        matched_labels = torch.where(
            (matched_labels == 0) & mask, torch.full_like(matched_labels, -1), matched_labels
        )
        if gt_classes.numel() == 0:
            # The parent labels every proposal of an image without boxes background, ignoring the
            # matcher; one stand-in gt of the background class (matched_idxs are all 0 here) makes
            # it honour the -1 labels instead.
            gt_classes = gt_classes.new_full((1,), self.num_classes)
        return super()._sample_proposals(matched_idxs, matched_labels, gt_classes)


@ROI_HEADS_REGISTRY.register()
class ImageScoreStandardROIHeads(PseudoROIHeadsMixin, StandardROIHeads):
    """Detectron2's StandardROIHeads (VGG16, FPN) with the pseudo mode of :class:`PseudoROIHeadsMixin`."""


@ROI_HEADS_REGISTRY.register()
class ImageScoreRes5ROIHeads(PseudoROIHeadsMixin, Res5ROIHeads):
    """Detectron2's Res5ROIHeads (R50-C4) with the pseudo mode of :class:`PseudoROIHeadsMixin`."""
