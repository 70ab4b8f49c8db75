"""The mapper of pseudo-labelled images (docs/method.md §2 item 8): Detectron2's DatasetMapper plus the ignore
boxes, which follow the image through the same geometric transforms, and an optional strong
photometric augmentation applied to pseudo-labelled records only; and the mean teacher's mapper of
unlabelled images, which gives the same image in its weak and strong views.

A record without ``"pseudo_labelled"`` maps exactly as Detectron2's DatasetMapper maps it; the flag
itself is a plain key of the record, which DatasetMapper keeps in the mapped dict.
"""

import copy
import functools
import math
from typing import List, Tuple

import numpy as np
import torch
from PIL import Image, ImageFilter

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

import detectron2.data.transforms as T  # noqa: E402
from detectron2.config import configurable  # noqa: E402
from detectron2.data import DatasetMapper  # noqa: E402
from detectron2.structures import Boxes  # noqa: E402

from .folder import SkipUnreadableMapper, is_unreadable  # noqa: E402

#: Key of the weak view in a :class:`WeakStrongViewMapper` dict ("image" is the strong view).
WEAK_IMAGE_KEY = "weak_image"

__all__ = [
    "PseudoLabelDatasetMapper",
    "WeakStrongViewMapper",
    "WEAK_IMAGE_KEY",
    "RandomErasing",
    "RandomGaussianBlur",
    "strong_augmentations",
]


def _blurred(image: np.ndarray, sigma: float) -> np.ndarray:
    return np.asarray(
        Image.fromarray(image.astype(np.uint8)).filter(ImageFilter.GaussianBlur(sigma))
    )


def _erased(image: np.ndarray, x0: int, y0: int, fill: np.ndarray) -> np.ndarray:
    """A copy of ``image`` with ``fill`` pasted at (x0, y0)."""
    image = image.copy()
    image[y0 : y0 + fill.shape[0], x0 : x0 + fill.shape[1]] = fill
    return image


class RandomGaussianBlur(T.Augmentation):
    """With probability ``prob``, a Gaussian blur of sigma drawn from ``sigma`` (Unbiased Teacher: 0.5, 0.1-2)."""

    def __init__(self, prob: float = 0.5, sigma: Tuple[float, float] = (0.1, 2.0)):
        super().__init__()
        self._init(locals())

    def get_transform(self, image):
        if self._rand_range() >= self.prob:
            return T.NoOpTransform()
        return T.ColorTransform(
            functools.partial(_blurred, sigma=float(self._rand_range(*self.sigma)))
        )


class RandomErasing(T.Augmentation):
    """Cutout: with probability ``prob``, one rectangle of ``scale`` x the image's area and aspect in
    ``ratio`` is filled with random values, as torchvision's RandomErasing(value="random") that
    Unbiased Teacher applies to the strong view. Boxes stay: the object may be partly hidden."""

    def __init__(
        self,
        prob: float,
        scale: Tuple[float, float] = (0.02, 0.2),
        ratio: Tuple[float, float] = (0.3, 3.3),
    ):
        super().__init__()
        self._init(locals())

    def get_transform(self, image):
        height, width = image.shape[:2]
        if self._rand_range() >= self.prob:
            return T.NoOpTransform()
        area = self._rand_range(*self.scale) * height * width
        aspect = math.exp(self._rand_range(math.log(self.ratio[0]), math.log(self.ratio[1])))
        h = min(height, max(1, int(round(math.sqrt(area * aspect)))))
        w = min(width, max(1, int(round(math.sqrt(area / aspect)))))
        y0, x0 = np.random.randint(0, height - h + 1), np.random.randint(0, width - w + 1)
        fill = np.random.randint(0, 256, size=(h, w) + image.shape[2:]).astype(image.dtype)
        return T.ColorTransform(functools.partial(_erased, x0=x0, y0=y0, fill=fill))


def strong_augmentations() -> List[T.Augmentation]:
    """Photometric only, so pseudo boxes stay where the geometric transforms put them: Unbiased
    Teacher's strong view, as far as it applies to 0-255 images: ±40 % brightness, contrast and
    saturation, Gaussian blur half of the time, then three cutouts (probabilities 0.7, 0.5, 0.3).

    Detectron2's RandomLighting is left out: its eigenvalues are for 0-1 images and shift 0-255
    pixels by well under one grey level. RandomSaturation's grey weights assume RGB; on BGR input
    (the R50 configs) it still jitters saturation, with blue and red weights swapped.
    """
    return [
        T.RandomBrightness(0.6, 1.4),
        T.RandomContrast(0.6, 1.4),
        T.RandomSaturation(0.6, 1.4),
        RandomGaussianBlur(),
        RandomErasing(0.7, scale=(0.05, 0.2)),
        RandomErasing(0.5),
        RandomErasing(0.3),
    ]


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
        self._strong.augmentations = T.AugmentationList(
            list(self.augmentations.augs) + strong_augmentations()
        )

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


class WeakStrongViewMapper(PseudoLabelDatasetMapper, SkipUnreadableMapper):
    """An unlabelled image in the mean teacher's two views, one dict per image (so Detectron2's
    batching and aspect-ratio grouping apply): the weak view, Detectron2's training augmentations
    (the labelled images' geometry), under :data:`WEAK_IMAGE_KEY` for the teacher, and as ``"image"``
    the same view with :func:`strong_augmentations` on top (STRONG_AUGMENTATION; photometric only,
    so boxes found on the weak view hold) for the student. Annotations are dropped: the image is unlabelled.
    An image that cannot be read becomes :class:`SkipUnreadableMapper`'s marker, for the stream to skip.
    """

    def __call__(self, dataset_dict):
        unlabelled = {key: value for key, value in dataset_dict.items() if key != "annotations"}
        mapped = SkipUnreadableMapper.__call__(self, unlabelled)  # DatasetMapper's, or the marker
        if is_unreadable(mapped):
            return mapped
        mapped[WEAK_IMAGE_KEY] = mapped["image"]
        if self.strong_augmentation:
            view = T.AugInput(mapped["image"].permute(1, 2, 0).numpy().copy())
            self._strong_photometric(view)
            mapped["image"] = torch.as_tensor(np.ascontiguousarray(view.image.transpose(2, 0, 1)))
        return mapped

    @functools.cached_property
    def _strong_photometric(self) -> T.AugmentationList:
        return T.AugmentationList(strong_augmentations())
