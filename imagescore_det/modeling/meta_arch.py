"""Faster R-CNN that weighs pseudo-labelled images apart from labelled ones (docs/method.md §2 item 8).

In training, :class:`ImageScoreRCNN` splits each batch on the records' ``pseudo_labelled`` flag.
Labelled images go through Detectron2's unchanged GeneralizedRCNN forward, so a batch without
pseudo-labelled images gives exactly Detectron2's losses. Pseudo-labelled images go through a second
forward with the heads in pseudo mode (:mod:`.pseudo_heads`); their losses are logged as
``loss_pseudo_*`` and weighted, so the trainer's sum is
``labelled losses + LAMBDA_U * (CLS_WEIGHT * cls/objectness + REG_WEIGHT * box regression)``.
Inference is GeneralizedRCNN's.
"""

import contextlib
from typing import Dict, List

import torch

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.config import configurable  # noqa: E402
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN  # noqa: E402
from detectron2.structures import Boxes  # noqa: E402
from detectron2.utils.events import get_event_storage  # noqa: E402

from .pseudo_heads import PseudoLabelMixin, PseudoTargets  # noqa: E402

__all__ = ["ImageScoreRCNN", "is_regression_loss"]

#: Loss names ending like this are box regression (REG_WEIGHT); every other loss is classification.
REGRESSION_SUFFIXES = ("_loc", "_reg")


def is_regression_loss(name: str) -> bool:
    """``loss_rpn_loc`` and ``loss_box_reg`` are box regression; ``loss_rpn_cls`` and ``loss_cls`` are not."""
    return name.endswith(REGRESSION_SUFFIXES)


@META_ARCH_REGISTRY.register()
class ImageScoreRCNN(GeneralizedRCNN):
    """GeneralizedRCNN with pseudo-labelled images trained apart (see the module docstring).

    Args:
        pseudo_training: False = every image trains as labelled (the pre-item-8 behaviour).
        ignore_unmatched, ignore_iou_thresh: see :class:`PseudoTargets`.
        cls_weight, reg_weight, lambda_u: the pseudo-labelled losses' weights.
        other arguments: as :class:`GeneralizedRCNN`.
    """

    @configurable
    def __init__(
        self,
        *,
        pseudo_training: bool = True,
        ignore_unmatched: bool = True,
        ignore_iou_thresh: float = 0.3,
        cls_weight: float = 1.0,
        reg_weight: float = 1.0,
        lambda_u: float = 1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.pseudo_training = pseudo_training
        self.ignore_unmatched = ignore_unmatched
        self.ignore_iou_thresh = ignore_iou_thresh
        self.cls_weight = cls_weight
        self.reg_weight = reg_weight
        self.lambda_u = lambda_u

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        settings = cfg.IMAGESCORE.PSEUDO_TRAINING
        ret.update(
            pseudo_training=settings.ENABLED,
            ignore_unmatched=settings.IGNORE_UNMATCHED,
            ignore_iou_thresh=settings.IGNORE_IOU_THRESH,
            cls_weight=settings.CLS_WEIGHT,
            reg_weight=settings.REG_WEIGHT,
            lambda_u=settings.LAMBDA_U,
        )
        return ret

    def forward(self, batched_inputs: List[Dict]):
        if not (self.training and self.pseudo_training):
            return super().forward(batched_inputs)
        pseudo = [x for x in batched_inputs if x.get("pseudo_labelled", False)]
        if not pseudo:
            return super().forward(batched_inputs)
        labelled = [x for x in batched_inputs if not x.get("pseudo_labelled", False)]
        losses = super().forward(labelled) if labelled else {}
        with self.pseudo_mode(pseudo), get_event_storage().name_scope("pseudo"):
            pseudo_losses = super().forward(pseudo)
        for name, value in pseudo_losses.items():
            weight = self.reg_weight if is_regression_loss(name) else self.cls_weight
            losses["loss_pseudo_" + name[len("loss_") :]] = value * (self.lambda_u * weight)
        return losses

    @contextlib.contextmanager
    def pseudo_mode(self, pseudo: List[Dict]):
        """Both heads in pseudo mode for the images ``pseudo`` (their ignore boxes on the model's device)."""
        targets = [
            PseudoTargets(
                ignore_unmatched=self.ignore_unmatched,
                ignore_boxes=x.get("ignore_boxes", Boxes(torch.zeros(0, 4))).to(self.device),
                ignore_iou_thresh=self.ignore_iou_thresh,
            )
            for x in pseudo
        ]
        with contextlib.ExitStack() as stack:
            for key, head in (
                ("PROPOSAL_GENERATOR", self.proposal_generator),
                ("ROI_HEADS", self.roi_heads),
            ):
                if not isinstance(head, PseudoLabelMixin):
                    raise ValueError(
                        "pseudo-labelled images need heads with a pseudo mode, but MODEL.%s.NAME builds %s: "
                        "use ImageScoreRPN / ImageScoreStandardROIHeads / ImageScoreRes5ROIHeads, or set "
                        "IMAGESCORE.PSEUDO_TRAINING.ENABLED False" % (key, type(head).__name__)
                    )
                stack.enter_context(head.pseudo_mode(targets))
            yield
