"""Unlabelled data as a plain folder of photos, and a test-time mapper that survives a bad file.

A folder set is every JPEG and PNG under a directory, searched recursively in sorted order. Its
image ids are the paths relative to the folder (``"2024/june/IMG_0001.jpg"``), so they stay the same
however often, and from wherever, the folder is read. Records carry no size: Detectron2's
``DatasetMapper`` fills ``height``/``width`` in from the decoded image.

In a 10,000-image folder one corrupt file must not end the run, so the scoring pass and the mean
teacher's unlabelled stream read images with :class:`SkipUnreadableMapper`: an image that cannot be
decoded becomes a marker record (see :func:`is_unreadable`) that the reader skips and reports
(:func:`warn_unreadable`), instead of an exception. Returning ``None`` would not do: Detectron2's
``MapDataset`` then silently draws another image in its place.
"""

import logging
import os
from typing import Dict, List

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.data import DatasetMapper  # noqa: E402

__all__ = [
    "IMAGE_EXTENSIONS",
    "load_image_folder",
    "SkipUnreadableMapper",
    "is_unreadable",
    "warn_unreadable",
    "UNREADABLE_KEY",
]

logger = logging.getLogger(__name__)

#: File endings (lower case) that a folder set reads as images.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
#: Key of a marker record: why the image could not be read.
UNREADABLE_KEY = "unreadable"


def load_image_folder(directory: str) -> List[Dict]:
    """Detectron2 dataset dicts (``file_name``, ``image_id``) of every JPEG/PNG under ``directory``."""
    if not os.path.isdir(directory):
        raise ValueError("image folder %s does not exist or is not a directory" % directory)
    records = []
    for parent, subdirs, files in os.walk(directory):
        subdirs.sort()
        for name in sorted(files):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                path = os.path.join(parent, name)
                records.append(
                    {
                        "file_name": path,
                        "image_id": os.path.relpath(path, directory).replace(os.sep, "/"),
                    }
                )
    if not records:
        raise ValueError(
            "image folder %s holds no image (looked for %s, recursively)"
            % (directory, ", ".join(IMAGE_EXTENSIONS))
        )
    return records


def is_unreadable(record: Dict) -> bool:
    """Whether a mapped record is :class:`SkipUnreadableMapper`'s marker for an image that failed to load."""
    return UNREADABLE_KEY in record


def warn_unreadable(record: Dict) -> None:
    """The warning that names the file of a marker record and why it was skipped. The reader of the
    markers gives it (in the main process; a training stream, which draws a file again and again,
    once per file), not the mapper, which may run in a loader's worker."""
    logger.warning(
        "Skipping %s: it cannot be read as an image (%s)",
        record["file_name"],
        record[UNREADABLE_KEY],
    )


class SkipUnreadableMapper(DatasetMapper):
    """Detectron2's ``DatasetMapper`` that turns an undecodable image into a marker record.

    The marker keeps ``file_name``, ``image_id`` and the size where the record gives one (0
    otherwise: Detectron2's aspect-ratio grouping of a training stream reads it) and says why under
    ``UNREADABLE_KEY``. Decoding errors only (PIL raises OSError, SyntaxError or ValueError);
    anything else still fails the run.
    """

    def __call__(self, dataset_dict):
        try:
            return super().__call__(dataset_dict)
        except (OSError, SyntaxError, ValueError) as error:
            return {
                "file_name": dataset_dict["file_name"],
                "image_id": dataset_dict["image_id"],
                "height": dataset_dict.get("height", 0),
                "width": dataset_dict.get("width", 0),
                UNREADABLE_KEY: "%s: %s" % (type(error).__name__, error),
            }
