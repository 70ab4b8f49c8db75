"""Datasets declared in the config (``IMAGESCORE.REGISTER_DATASETS``), so that no Python is needed.

One string per dataset, in one of three forms::

    NAME=coco:JSON_FILE:IMAGE_DIR               COCO-format annotations (Detectron2's load_coco_json)
    NAME=voc:DIR:SPLIT[:CLASS1,CLASS2,...]      Pascal VOC layout (Detectron2's load_voc_instances);
                                                classes default to the 20 VOC classes
    NAME=folder:DIR                             unlabelled photos, searched recursively (see .folder)

The tools call :func:`register_config_datasets` before they touch any dataset; since the list lives in
the config (and in the ``config.yaml`` a run writes), a resumed run and ``tools/score_voc.py`` see the
same sets. Relative paths resolve against the working directory; a path that starts with
``$DETECTRON2_DATASETS`` starts in Detectron2's dataset root (default ``datasets``), as read at
registration, so that a config names data that a tool wrote there (e.g. configs/nuclei_ssl.yaml). Registration parses every entry
first (a malformed one registers nothing), reads a COCO file's categories, and checks that the
labelled, training and test sets share one class list. Loading stays lazy, as in Detectron2; the
loaders check what Detectron2's own would report without a file name (a class outside the list, an
image file that is missing).
"""

import dataclasses
import json
import logging
import os
import xml.etree.ElementTree as ET
from typing import List, Optional, Sequence, Tuple

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.data.datasets import load_coco_json  # noqa: E402
from detectron2.data.datasets.pascal_voc import CLASS_NAMES as VOC_CLASSES  # noqa: E402
from detectron2.data.datasets.pascal_voc import load_voc_instances  # noqa: E402
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN  # noqa: E402

from ..utils.paths import datasets_root  # noqa: E402
from .folder import load_image_folder  # noqa: E402

__all__ = [
    "FORMS",
    "DatasetEntry",
    "parse_dataset_entry",
    "register_dataset",
    "register_config_datasets",
    "check_class_lists",
]

logger = logging.getLogger(__name__)

#: The accepted forms, quoted in every parsing error.
FORMS = (
    "NAME=coco:JSON_FILE:IMAGE_DIR",
    "NAME=voc:DIR:SPLIT[:CLASS1,CLASS2,...]",
    "NAME=folder:DIR",
)
#: The config key that names a dataset of each role, quoted in errors.
ROLE_KEYS = {
    "labelled": "IMAGESCORE.LABELLED_DATASETS",
    "unlabelled": "IMAGESCORE.UNLABELLED_DATASETS",
    "training": "DATASETS.TRAIN",
    "test": "DATASETS.TEST",
}
#: Keys a COCO-format detection file must have.
COCO_KEYS = ("images", "annotations", "categories")
#: How an entry's path names Detectron2's dataset root.
DATASETS_ROOT_VARIABLES = ("$DETECTRON2_DATASETS", "${DETECTRON2_DATASETS}")


@dataclasses.dataclass(frozen=True)
class DatasetEntry:
    """One parsed ``REGISTER_DATASETS`` string: paths absolute, classes only for VOC."""

    name: str
    kind: str  # "coco" | "voc" | "folder"
    paths: Tuple[str, ...]  # coco: (json, image dir); voc: (dir,); folder: (dir,)
    split: str = ""
    class_names: Tuple[str, ...] = ()


def resolve_path(field: str) -> str:
    """The absolute path of one entry field, a leading ``$DETECTRON2_DATASETS`` replaced by the dataset root."""
    for variable in DATASETS_ROOT_VARIABLES:
        if field == variable or field.startswith(variable + "/"):
            field = datasets_root() + field[len(variable) :]
    return os.path.abspath(field)


def parse_dataset_entry(entry: str) -> DatasetEntry:
    """Parse one entry; a malformed one raises ValueError quoting it and the accepted forms."""

    def fail(problem: str):
        raise ValueError(
            "IMAGESCORE.REGISTER_DATASETS entry %r: %s; the forms are %s"
            % (entry, problem, ", ".join(FORMS))
        )

    if not isinstance(entry, str) or "=" not in entry:
        fail("expected NAME=KIND:...")
    name, _, spec = entry.partition("=")
    kind, _, rest = spec.partition(":")
    fields = rest.split(":")
    if not name.strip() or name != name.strip():
        fail("the dataset name is empty or has surrounding spaces")
    if any(not field for field in fields):
        fail("a field is empty")
    if kind == "coco" and len(fields) == 2:
        return DatasetEntry(name, kind, tuple(resolve_path(field) for field in fields))
    if kind == "voc" and len(fields) in (2, 3):
        classes = tuple(fields[2].split(",")) if len(fields) == 3 else tuple(VOC_CLASSES)
        if any(not c for c in classes) or len(set(classes)) != len(classes):
            fail("the class list has an empty or repeated name")
        return DatasetEntry(
            name, kind, (resolve_path(fields[0]),), split=fields[1], class_names=classes
        )
    if kind == "folder" and len(fields) == 1:
        return DatasetEntry(name, kind, (resolve_path(fields[0]),))
    if kind not in ("coco", "voc", "folder"):
        fail("unknown kind %r" % kind)
    fail("wrong number of ':'-separated fields for kind %r" % kind)


def read_coco_file(json_file: str) -> dict:
    """The parsed COCO file; a missing, invalid or incomplete one raises ValueError naming it."""
    try:
        with open(json_file) as f:
            payload = json.load(f)
    except FileNotFoundError:
        raise ValueError("COCO annotation file %s does not exist" % json_file) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            "COCO annotation file %s is not valid JSON: %s" % (json_file, error)
        ) from error
    missing = [
        key
        for key in COCO_KEYS
        if not isinstance(payload, dict) or not isinstance(payload.get(key), list)
    ]
    if missing:
        raise ValueError(
            "COCO annotation file %s lacks the list(s) %s" % (json_file, ", ".join(missing))
        )
    if not payload["categories"] or any(
        not {"id", "name"} <= set(c) for c in payload["categories"]
    ):
        raise ValueError(
            "COCO annotation file %s needs categories, each with an id and a name" % json_file
        )
    return payload


def check_images_exist(dataset_dicts: Sequence[dict], source: str) -> None:
    missing = [d["file_name"] for d in dataset_dicts if not os.path.isfile(d["file_name"])]
    if missing:
        raise FileNotFoundError(
            "%s names %d image file(s) that do not exist, e.g. %s"
            % (source, len(missing), ", ".join(missing[:3]))
        )


def load_checked_coco(json_file: str, image_root: str, name: str) -> List[dict]:
    read_coco_file(json_file)  # a clear error for a file that changed since registration
    dicts = load_coco_json(json_file, image_root, name)
    check_images_exist(dicts, json_file)
    return dicts


def load_checked_voc(dirname: str, split: str, class_names: Sequence[str]) -> List[dict]:
    try:
        dicts = load_voc_instances(dirname, split, list(class_names))
    except ValueError:  # list.index of an unknown class: find the file that names it
        raise_for_unknown_class(dirname, split, class_names)
        raise
    check_images_exist(dicts, os.path.join(dirname, "ImageSets", "Main", split + ".txt"))
    return dicts


def raise_for_unknown_class(dirname: str, split: str, class_names: Sequence[str]) -> None:
    with open(os.path.join(dirname, "ImageSets", "Main", split + ".txt")) as f:
        ids = f.read().split()
    for image_id in ids:
        xml_file = os.path.join(dirname, "Annotations", image_id + ".xml")
        for obj in ET.parse(xml_file).findall("object"):
            if obj.find("name").text not in class_names:
                raise ValueError(
                    "%s names class %r, which is not in the class list %s (give the list as "
                    "NAME=voc:DIR:SPLIT:CLASS1,CLASS2,...)"
                    % (xml_file, obj.find("name").text, list(class_names))
                )


def register_dataset(entry: DatasetEntry) -> None:
    """(Re-)register one parsed entry in Detectron2's catalogs, with its evaluator type."""
    for catalog in (DatasetCatalog, MetadataCatalog):
        if entry.name in catalog.list():
            catalog.remove(entry.name)
    if entry.kind == "coco":
        json_file, image_root = entry.paths
        categories = sorted(read_coco_file(json_file)["categories"], key=lambda c: c["id"])
        DatasetCatalog.register(
            entry.name, lambda: load_checked_coco(json_file, image_root, entry.name)
        )
        MetadataCatalog.get(entry.name).set(
            json_file=json_file,
            image_root=image_root,
            evaluator_type="coco",
            thing_classes=[c["name"] for c in categories],
            thing_dataset_id_to_contiguous_id={c["id"]: i for i, c in enumerate(categories)},
        )
    elif entry.kind == "voc":
        (dirname,) = entry.paths
        split_file = os.path.join(dirname, "ImageSets", "Main", entry.split + ".txt")
        if not os.path.isfile(split_file):
            raise ValueError(
                "VOC dataset %r: split file %s does not exist" % (entry.name, split_file)
            )
        year = (
            2007 if "2007" in os.path.basename(dirname) else 2012
        )  # Detectron2's VOC evaluator: 11-point AP for 2007
        DatasetCatalog.register(
            entry.name, lambda: load_checked_voc(dirname, entry.split, entry.class_names)
        )
        MetadataCatalog.get(entry.name).set(
            thing_classes=list(entry.class_names),
            dirname=dirname,
            year=year,
            split=entry.split,
            evaluator_type="pascal_voc",
        )
    else:
        (directory,) = entry.paths
        if not os.path.isdir(directory):
            raise ValueError(
                "image folder %s of dataset %r does not exist or is not a directory"
                % (directory, entry.name)
            )
        DatasetCatalog.register(entry.name, lambda: load_image_folder(directory))
        MetadataCatalog.get(entry.name).set(image_root=directory, evaluator_type="folder")
    logger.info("Registered %s dataset %r from %s", entry.kind, entry.name, ":".join(entry.paths))


def register_config_datasets(cfg) -> List[str]:
    """Register ``cfg.IMAGESCORE.REGISTER_DATASETS`` and check the class lists; return the names.

    Declared sets that training reads only late (the unlabelled sets at the swap, the test sets at
    the first evaluation) are loaded once here, so that a bad file fails the run at its start.
    """
    entries = [parse_dataset_entry(entry) for entry in cfg.IMAGESCORE.REGISTER_DATASETS]
    names = [entry.name for entry in entries]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(
            "IMAGESCORE.REGISTER_DATASETS declares %s more than once: each name must be declared once"
            % ", ".join(repr(name) for name in repeated)
        )
    for entry in entries:
        register_dataset(entry)
    check_class_lists(cfg)
    late = set(cfg.IMAGESCORE.UNLABELLED_DATASETS) | set(cfg.DATASETS.TEST)
    for entry in entries:
        if entry.name in late:
            logger.info(
                "Checked dataset %r: %d images", entry.name, len(DatasetCatalog.get(entry.name))
            )
    return [entry.name for entry in entries]


def class_names_of(name: str, role: str) -> Optional[List[str]]:
    if name not in DatasetCatalog.list():
        raise ValueError(
            "%s dataset %r (in %s) is not registered; declare it in IMAGESCORE.REGISTER_DATASETS (%s)"
            % (role, name, ROLE_KEYS[role], ", ".join(FORMS))
        )
    return MetadataCatalog.get(name).get("thing_classes")


def check_class_lists(cfg) -> None:
    """The labelled, training and test sets must name the same classes in the same order.

    Pseudo labels take the labelled set's class ids, and the model predicts them, so a test set
    whose list differs would be scored against the wrong classes. Unlabelled sets are not checked:
    their annotations, if any, never reach training.
    """
    labelled = list(cfg.IMAGESCORE.LABELLED_DATASETS)
    if not labelled:
        raise ValueError(
            "IMAGESCORE.LABELLED_DATASETS is empty: name at least one registered dataset"
        )
    for name in cfg.IMAGESCORE.UNLABELLED_DATASETS:
        class_names_of(name, "unlabelled")  # registered; any class list, or none (a folder)
    roles = (
        [(n, "labelled") for n in labelled]
        + [(n, "training") for n in cfg.DATASETS.TRAIN]
        + [(n, "test") for n in cfg.DATASETS.TEST]
    )
    expected = class_names_of(labelled[0], "labelled")
    for name, role in roles:
        found = class_names_of(name, role)
        if found is None:
            raise ValueError(
                "%s dataset %r has no class list: an image folder can only be unlabelled"
                % (role, name)
            )
        if list(found) != list(expected):
            raise ValueError(
                "%s dataset %r has classes %s, but labelled dataset %r has %s; they must be the same, in the same order"
                % (role, name, found, labelled[0], list(expected))
            )
    architecture = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)
    if issubclass(architecture, GeneralizedRCNN) and cfg.MODEL.ROI_HEADS.NUM_CLASSES != len(
        expected
    ):
        raise ValueError(
            "MODEL.ROI_HEADS.NUM_CLASSES is %d, but labelled dataset %r has %d classes (%s)"
            % (cfg.MODEL.ROI_HEADS.NUM_CLASSES, labelled[0], len(expected), ", ".join(expected))
        )
