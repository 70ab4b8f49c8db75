"""The mapper of pseudo-labelled images (docs/method.md §2 item 8): Detectron2's DatasetMapper plus the ignore
boxes, which follow the image through the same geometric transforms, and an optional strong
photometric augmentation applied to pseudo-labelled records only.

A record without ``"pseudo_labelled"`` maps exactly as Detectron2's DatasetMapper maps it; the flag
itself is a plain key of the record, which DatasetMapper keeps in the mapped dict.
"""
import copy
from typing import List

import numpy as np

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

import detectron2.data.transforms as T  # noqa: E402
from detectron2.config import configurable  # noqa: E402
from detectron2.data import DatasetMapper  # noqa: E402
from detectron2.structures import Boxes  # noqa: E402

__all__ = ["PseudoLabelDatasetMapper", "strong_augmentations"]


def strong_augmentations() -> List[T.Augmentation]:
    """Photometric only, so pseudo boxes stay where the geometric transforms put them: ±40 %
    brightness, contrast and saturation, the colour-jitter ranges of Unbiased Teacher's strong view.

    Detectron2's RandomLighting is left out: its eigenvalues are for 0-1 images and shift 0-255
    pixels by well under one grey level. RandomSaturation's grey weights assume RGB; on BGR input
    (the R50 configs) it still jitters saturation, with blue and red weights swapped.
    """
    return [T.RandomBrightness(0.6, 1.4), T.RandomContrast(0.6, 1.4), T.RandomSaturation(0.6, 1.4)]


class PseudoLabelDatasetMapper(DatasetMapper):
    """DatasetMapper that also transforms ``ignore_boxes`` and strongly augments pseudo-labelled images.

    Args:
        strong_augmentation: append :func:`strong_augmentations` after the usual augmentations for
            records flagged ``pseudo_labelled`` (``IMAGESCORE.PSEUDO_TRAINING.STRONG_AUGMENTATION``).
        other arguments: as Detectron2's :class:`DatasetMapper`.
    """

    @configurable
    def __init__(self, is_train: bool, *, strong_augmentation: bool = False, **kwargs):
        super().__init__(is_train, **kwargs)
        self.strong_augmentation = bool(strong_augmentation)
        # The same mapper with the strong list: pseudo-labelled records go through it.
        self._strong = copy.copy(self)
        self._strong.augmentations = T.AugmentationList(list(self.augmentations.augs) + strong_augmentations())

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        ret = super().from_config(cfg, is_train)
        ret["strong_augmentation"] = cfg.IMAGESCORE.PSEUDO_TRAINING.STRONG_AUGMENTATION
        return ret

    def __call__(self, dataset_dict):
        if self.strong_augmentation and dataset_dict.get("pseudo_labelled", False):
            return DatasetMapper.__call__(self._strong, dataset_dict)
        return super().__call__(dataset_dict)

    def _transform_annotations(self, dataset_dict, transforms, image_shape):
        if "ignore_boxes" in dataset_dict:
            boxes = np.asarray(dataset_dict["ignore_boxes"], dtype=np.float64).reshape(-1, 4)
            ignore_boxes = Boxes(transforms.apply_box(boxes))
            ignore_boxes.clip(image_shape)
            dataset_dict["ignore_boxes"] = ignore_boxes
        super()._transform_annotations(dataset_dict, transforms, image_shape)
