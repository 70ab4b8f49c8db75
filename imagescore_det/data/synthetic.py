"""A synthetic detection dataset written in the exact Pascal VOC layout (the embedded default data).

VOC cannot be downloaded where this project runs, so this module draws a stand-in that
Detectron2's own VOC loader reads unchanged::

    <out>/VOC2007/{JPEGImages,Annotations,ImageSets/Main/{trainval,test}.txt}   labelled + test
    <out>/VOC2012/{JPEGImages,Annotations,ImageSets/Main/trainval.txt}         "unlabelled"

The unlabelled set keeps its annotations: they are the ground truth that measures how precise the
pseudo-labels are. Images mix easy and hard ones (clutter, low contrast, blur, noise, occlusion,
truncation) so that choosing trustworthy images matters. Each image depends only on
(seed, year, number), so changing one split's count leaves the other splits' images unchanged.

An uncurated pool (``distractor_fraction`` > 0) replaces that share of the *unlabelled* images by
distractors of the ``distractors`` kinds, in equal shares (:data:`DISTRACTOR_KINDS`): which images,
and what each looks like, come from random streams of their own, so the labelled and test splits
and the remaining clean images are the clean set's, byte for byte. Every unlabelled image of such a
pool records its kind (``clean`` or the distractor's) in its annotation (:data:`KIND_TAG`); its
ground truth holds only objects of the labelled classes. PIL and numpy only (the ``photos`` kind
reads scikit-image's bundled photos): no Detectron2 is needed to make the data.
"""

import argparse
import functools
import importlib.util
import json
import logging
import math
import os
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

from ..utils.io import atomic_folder

logger = logging.getLogger(__name__)

#: Object classes: a filled shape in a fixed colour (plus jitter); order gives category ids.
SYNTHETIC_CLASSES = ("red_square", "green_circle", "blue_triangle", "yellow_cross", "magenta_ring")
_COLOURS = {
    "red": (215, 40, 40),
    "green": (40, 175, 60),
    "blue": (45, 75, 215),
    "yellow": (230, 205, 35),
    "magenta": (205, 50, 200),
}
# Polygon outlines in unit coordinates; circle and ring are drawn as ellipses.
_POLYGONS = {
    "square": [(-1, -1), (1, -1), (1, 1), (-1, 1)],
    "triangle": [(0, -1), (0.866, 0.5), (-0.866, 0.5)],
    "cross": [
        (-0.3, -1),
        (0.3, -1),
        (0.3, -0.3),
        (1, -0.3),
        (1, 0.3),
        (0.3, 0.3),
        (0.3, 1),
        (-0.3, 1),
        (-0.3, 0.3),
        (-1, 0.3),
        (-1, -0.3),
        (-0.3, -0.3),
    ],
    # Shapes of no labelled class: the "novel" distractors draw them in the classes' colours.
    "star": [
        (math.sin(k * math.pi / 5) * r, -math.cos(k * math.pi / 5) * r)
        for k, r in zip(range(10), [1, 0.42] * 5)
    ],
    "hexagon": [(math.cos(k * math.pi / 3), math.sin(k * math.pi / 3)) for k in range(6)],
    "arrow": [(-1, -0.3), (0.2, -0.3), (0.2, -0.8), (1, 0), (0.2, 0.8), (0.2, 0.3), (-1, 0.3)],
    "tee": [
        (-1, -1),
        (1, -1),
        (1, -0.45),
        (0.28, -0.45),
        (0.28, 1),
        (-0.28, 1),
        (-0.28, -0.45),
        (-1, -0.45),
    ],
}
IMAGE_SIDE_RANGE = (160, 400)  # width and height, drawn independently
OBJECT_SIDE_RANGE = (0.20, 0.45)  # object extent, as a fraction of the image's short side
MAX_OBJECTS = 4
MIN_VISIBLE_FRACTION = 0.5  # occlusion and truncation never hide more than this
_PLACEMENT_ATTEMPTS = 10

#: (split key, year folder, year, VOC split name, first image number - 1); test ids sit in their own
#: number block so that the labelled count never shifts them.
SPLITS = (
    ("labelled", "VOC2007", 2007, "trainval", 0),
    ("unlabelled", "VOC2012", 2012, "trainval", 0),
    ("test", "VOC2007", 2007, "test", 500000),
)
MAX_IMAGES_PER_SPLIT = 499999
MANIFEST_NAME = "synthetic_voc.json"  # written last; its presence marks a finished set
GENERATOR_VERSION = 1

#: What an uncurated pool holds besides clean images: "novel" (scenes whose objects are shapes of
#: no labelled class, in the classes' colours and sizes), "empty" (background and clutter only),
#: "shifted" (the labelled classes in a look the labelled set never shows: palette, texture, blur,
#: noise, scale) and "photos" (crops of scikit-image's bundled photographs).
DISTRACTOR_KINDS = ("novel", "empty", "shifted", "photos")
CLEAN_KIND = "clean"
#: The annotation element that records an image's kind (only in the unlabelled split of an uncurated pool).
KIND_TAG = "kind"
NOVEL_SHAPES = tuple(
    "%s_%s" % (colour, shape)
    for colour in _COLOURS
    for shape in ("star", "hexagon", "arrow", "tee")
)
#: scikit-image's bundled photographs (none needs a download) that the "photos" kind crops.
PHOTO_NAMES = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "camera",
    "coins",
    "moon",
    "brick",
    "grass",
    "gravel",
)
#: The last word of a distractor's random-stream key [seed, year, number, DISTRACTOR_STREAM]; number 0
#: (no image has it) keys the draw of which unlabelled images are distractors.
DISTRACTOR_STREAM = 1


@dataclass(frozen=True)
class SyntheticObject:
    name: str
    box: Tuple[int, int, int, int]  # VOC convention: 1-based inclusive xmin, ymin, xmax, ymax
    truncated: bool  # the shape extends beyond the image border
    mask: np.ndarray  # bool [H, W]: the object's visible pixels; box is tight on it


@dataclass(frozen=True)
class SyntheticImage:
    image: np.ndarray  # uint8 [H, W, 3], RGB
    objects: Tuple[SyntheticObject, ...]
    difficulty: float  # 0 = clean and clear ... 1 = cluttered, faint, blurred, noisy
    jpeg_quality: int


def _shape_mask(name: str, side: int, angle: float) -> np.ndarray:
    """Bool [side, side] mask of the class's shape, rotated by ``angle`` radians, touching the patch edge."""
    canvas = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(canvas)
    kind = name.split("_", 1)[1]
    if kind in ("circle", "ring"):
        draw.ellipse([0, 0, side - 1, side - 1], fill=1)
        if kind == "ring":
            inset = round(side * 0.25)
            draw.ellipse([inset, inset, side - 1 - inset, side - 1 - inset], fill=0)
    else:
        points = np.asarray(_POLYGONS[kind], dtype=np.float64)
        rotation = np.array(
            [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
        )
        points = points @ rotation.T
        points -= (points.max(0) + points.min(0)) / 2
        points *= (side - 1) / (points.max(0) - points.min(0)).max()
        draw.polygon([tuple(p) for p in points + (side - 1) / 2], fill=1)
    return np.asarray(canvas, dtype=bool)


def _overlap(x0: int, y0: int, side: int, width: int, height: int):
    """Slices of the image and of a side x side patch placed at (x0, y0) that cover the same pixels."""
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + side, width), min(y0 + side, height)
    return (slice(iy0, iy1), slice(ix0, ix1)), (
        slice(iy0 - y0, iy1 - y0),
        slice(ix0 - x0, ix1 - x0),
    )


def _place_objects(rng, width: int, height: int, difficulty: float, domain: "_Domain"):
    """Choose shapes and positions; returns [(name, patch mask, x0, y0, truncated)] and the owner map."""
    short = min(width, height)
    owner = np.full((height, width), -1, dtype=np.int8)  # index of the object on top at each pixel
    placed, areas = [], []  # areas: each object's pixels inside the image, before later occlusion
    if domain.max_objects == 0:
        return placed, owner
    for _ in range(rng.integers(1, domain.max_objects + 1)):
        name = domain.shapes[rng.integers(len(domain.shapes))]
        for attempt in range(_PLACEMENT_ATTEMPTS):
            side = int(short * rng.uniform(*domain.object_sides))
            angle = (
                rng.uniform(0, 2 * math.pi)
                if name.endswith("triangle")
                else rng.uniform(-0.45, 0.45)
            )
            patch = _shape_mask(name, side, angle)
            x0, y0 = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
            if attempt < _PLACEMENT_ATTEMPTS - 1 and rng.random() < 0.15 + 0.2 * difficulty:
                overhang, edge = int(side * rng.uniform(0.15, 0.45)), rng.integers(4)
                x0 = {0: -overhang, 1: width - side + overhang}.get(edge, x0)
                y0 = {2: -overhang, 3: height - side + overhang}.get(edge, y0)
            image_part, patch_part = _overlap(x0, y0, side, width, height)
            inside = patch[patch_part]
            if inside.sum() < MIN_VISIBLE_FRACTION * patch.sum():
                continue
            trial = owner.copy()
            trial[image_part][inside] = len(placed)
            if all(
                (trial == k).sum() >= MIN_VISIBLE_FRACTION * area for k, area in enumerate(areas)
            ):
                placed.append((name, patch, x0, y0, bool(inside.sum() < patch.sum())))
                areas.append(int(inside.sum()))
                owner = trial
                break
    return placed, owner


def _draw_strokes(image: Image.Image, rng, count: int, difficulty: float) -> None:
    """Clutter that is not an object: lines and open arcs, sometimes in the classes' own colours."""
    draw = ImageDraw.Draw(image)
    width, height = image.size
    for _ in range(count):
        if rng.random() < 0.6 * difficulty:
            colour = np.array(
                _COLOURS[SYNTHETIC_CLASSES[rng.integers(len(SYNTHETIC_CLASSES))].split("_")[0]]
            )
        else:
            colour = rng.uniform(20, 235, 3)
        colour = tuple(int(c) for c in np.clip(colour + rng.normal(0, 20, 3), 0, 255))
        xs, ys = np.sort(rng.integers(0, width, 2)), np.sort(rng.integers(0, height, 2))
        box = [int(xs[0]), int(ys[0]), int(xs[1]) + 1, int(ys[1]) + 1]
        stroke = int(rng.integers(1, 3 + round(3 * difficulty)))
        if rng.random() < 0.5:
            draw.line(box, fill=colour, width=stroke)
        else:
            start = float(rng.uniform(0, 360))
            draw.arc(box, start, start + float(rng.uniform(40, 250)), fill=colour, width=stroke)


def _background(rng, width: int, height: int, difficulty: float) -> np.ndarray:
    """Float [H, W, 3]: a muted two-colour gradient with soft blotches, so objects stay distinguishable."""
    ends = rng.uniform(55, 200, (2, 1)) + rng.normal(0, 25, (2, 3))
    theta = rng.uniform(0, 2 * math.pi)
    ys, xs = np.ogrid[0:height, 0:width]
    ramp = (xs * math.cos(theta) + ys * math.sin(theta)).astype(np.float32)
    ramp = (ramp - ramp.min()) / max(ramp.max() - ramp.min(), 1e-6)
    image = ends[0].astype(np.float32) + (ends[1] - ends[0]).astype(np.float32) * ramp[..., None]
    blotches = rng.normal(0, 12 + 28 * difficulty, (3, 6, 6)).astype(np.float32)
    for c in range(3):
        image[..., c] += np.asarray(
            Image.fromarray(blotches[c], "F").resize((width, height), Image.BILINEAR)
        )
    return image


@dataclass(frozen=True)
class _Domain:
    """How a scene is drawn; the defaults are the labelled set's look (the clean images)."""

    shapes: Tuple[str, ...] = SYNTHETIC_CLASSES  # names ("colour_shape") the objects are drawn from
    max_objects: int = MAX_OBJECTS  # 0: background and clutter only
    object_sides: Tuple[float, float] = OBJECT_SIDE_RANGE
    stripes: Optional[Tuple[float, float]] = None  # (period px, angle): objects filled with stripes
    checker: int = 0  # > 0: a checkerboard of this cell size (px) textures the background
    hue_turn: float = 0.0  # radians the whole image's hue is turned by (another palette)
    blur: float = 0.0  # Gaussian blur radius applied to every image of the domain
    noise: float = 0.0  # added to the noise's standard deviation


CLEAN_DOMAIN = _Domain()


def _stripe_field(width: int, height: int, period: float, angle: float) -> np.ndarray:
    """Float [H, W] in {0.3, 1}: bands ``period`` pixels apart at ``angle``, the fill of a striped object."""
    ys, xs = np.mgrid[0:height, 0:width]
    phase = (xs * math.cos(angle) + ys * math.sin(angle)) * (2 * math.pi / period)
    return np.where(np.sin(phase) > 0, 1.0, 0.3)


def _turn_hue(image: np.ndarray, angle: float) -> np.ndarray:
    """Float [H, W, 3] with its hue turned by ``angle`` radians (a rotation about the grey axis in YIQ)."""
    to_yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    turn = np.array(
        [[1, 0, 0], [0, math.cos(angle), -math.sin(angle)], [0, math.sin(angle), math.cos(angle)]]
    )
    return image @ (np.linalg.inv(to_yiq) @ turn @ to_yiq).T.astype(np.float32)


def _render(rng, domain: _Domain) -> SyntheticImage:
    """One scene of ``domain`` drawn with ``rng``; the clean domain makes exactly the clean images' draws."""
    width, height = (int(v) for v in rng.integers(IMAGE_SIDE_RANGE[0], IMAGE_SIDE_RANGE[1] + 1, 2))
    difficulty = float(rng.uniform(0.0, 0.35) if rng.random() < 0.5 else rng.uniform(0.35, 1.0))
    background = _background(rng, width, height, difficulty)
    if domain.checker:
        ys, xs = np.mgrid[0:height, 0:width]
        background += (((xs // domain.checker + ys // domain.checker) % 2) * 40 - 20)[..., None]
    canvas = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
    _draw_strokes(canvas, rng, int(rng.integers(2, 6)) + round(8 * difficulty), difficulty)
    placed, owner = _place_objects(rng, width, height, difficulty, domain)
    fill = _stripe_field(width, height, *domain.stripes) if domain.stripes else None
    image = np.asarray(canvas, dtype=np.float32)
    for name, patch, x0, y0, _ in placed:
        colour = np.array(_COLOURS[name.split("_")[0]]) + rng.normal(0, 12, 3)
        py, px = np.mgrid[-1 : 1 : patch.shape[0] * 1j, -1 : 1 : patch.shape[1] * 1j]
        shade = 1 + 0.12 * (rng.uniform(-1, 1) * px + rng.uniform(-1, 1) * py)
        alpha = patch * (1 - rng.uniform(0, 0.55 * difficulty))
        image_part, patch_part = _overlap(x0, y0, patch.shape[0], width, height)
        a = alpha[patch_part]
        if fill is not None:
            a = a * fill[image_part]
        a = a[..., None]
        image[image_part] = (
            image[image_part] * (1 - a) + (colour * shade[..., None])[patch_part] * a
        )
    contrast, brightness = 1 - 0.4 * difficulty * rng.random(), rng.uniform(-15, 15)
    canvas = Image.fromarray(
        np.clip((image - 128) * contrast + 128 + brightness, 0, 255).astype(np.uint8)
    )
    _draw_strokes(
        canvas, rng, int(rng.binomial(3, difficulty)), difficulty
    )  # thin occluders on top
    if rng.random() < difficulty:
        canvas = canvas.filter(
            ImageFilter.GaussianBlur(float(rng.uniform(0.5, 0.5 + 2 * difficulty)))
        )
    if domain.blur:
        canvas = canvas.filter(ImageFilter.GaussianBlur(domain.blur))
    noise = rng.standard_normal((height, width, 3), dtype=np.float32) * (
        2 + 16 * difficulty + domain.noise
    )
    noisy = np.asarray(canvas, dtype=np.float32) + noise
    if domain.hue_turn:
        noisy = _turn_hue(noisy, domain.hue_turn)
    objects = []
    for k, (name, _, _, _, truncated) in enumerate(placed):
        if name not in SYNTHETIC_CLASSES:
            continue  # a novel shape is drawn, but it is no object of the task
        visible = owner == k
        rows, cols = np.flatnonzero(visible.any(1)), np.flatnonzero(visible.any(0))
        box = (int(cols[0]) + 1, int(rows[0]) + 1, int(cols[-1]) + 1, int(rows[-1]) + 1)
        objects.append(SyntheticObject(name, box, truncated, visible))
    return SyntheticImage(
        np.clip(noisy, 0, 255).astype(np.uint8),
        tuple(objects),
        difficulty,
        int(round(92 - 40 * difficulty)),
    )


def render_synthetic_image(seed: int, year: int, number: int) -> SyntheticImage:
    """Draw the image with id ``f"{year}_{number:06d}"``; the result depends on these three values only."""
    return _render(np.random.default_rng([seed, year, number]), CLEAN_DOMAIN)


def _shifted_domain(rng) -> _Domain:
    """The labelled classes in a look the labelled set never shows, its strength drawn per image."""
    return _Domain(
        max_objects=MAX_OBJECTS + 2,
        object_sides=(0.10, 0.22),
        stripes=(float(rng.uniform(4, 9)), float(rng.uniform(0, math.pi))),
        checker=int(rng.integers(6, 16)),
        hue_turn=float(rng.choice([-1, 1]) * rng.uniform(math.pi / 3, math.pi)),
        blur=float(rng.uniform(1.0, 2.5)),
        noise=float(rng.uniform(12, 30)),
    )


@functools.lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    """uint8 [H, W, 3] of scikit-image's bundled photo ``name`` (grey ones repeated over 3 channels)."""
    import skimage.data

    photo = np.asarray(getattr(skimage.data, name)())
    if photo.ndim == 2:
        photo = np.repeat(photo[..., None], 3, axis=2)
    return np.ascontiguousarray(photo[..., :3].astype(np.uint8))


def _render_photo(rng) -> SyntheticImage:
    """A crop of one of :data:`PHOTO_NAMES` at a synthetic image's size: a picture with no object of the task."""
    width, height = (int(v) for v in rng.integers(IMAGE_SIDE_RANGE[0], IMAGE_SIDE_RANGE[1] + 1, 2))
    photo = _photo(PHOTO_NAMES[rng.integers(len(PHOTO_NAMES))])
    rows, cols = photo.shape[:2]
    scale = min(cols / width, rows / height) * float(rng.uniform(0.3, 1.0))
    crop_w, crop_h = max(1, int(width * scale)), max(1, int(height * scale))
    x0, y0 = int(rng.integers(0, cols - crop_w + 1)), int(rng.integers(0, rows - crop_h + 1))
    crop = Image.fromarray(photo[y0 : y0 + crop_h, x0 : x0 + crop_w]).resize(
        (width, height), Image.BILINEAR
    )
    difficulty = float(rng.uniform(0.0, 1.0))
    return SyntheticImage(np.asarray(crop), (), difficulty, int(round(92 - 40 * difficulty)))


def render_distractor(seed: int, year: int, number: int, kind: str) -> SyntheticImage:
    """The distractor of ``kind`` (:data:`DISTRACTOR_KINDS`) with id ``f"{year}_{number:06d}"``.

    Drawn from a stream of its own (key ``[seed, year, number, DISTRACTOR_STREAM]``), so that no
    clean image's draws change; its ``objects`` are the ground truth, objects of the labelled
    classes only (a ``shifted`` image's; none for the other kinds).
    """
    rng = np.random.default_rng([seed, year, number, DISTRACTOR_STREAM])
    if kind == "photos":
        return _render_photo(rng)
    if kind == "novel":
        return _render(rng, _Domain(shapes=NOVEL_SHAPES))
    if kind == "empty":
        return _render(rng, _Domain(max_objects=0))
    if kind == "shifted":
        return _render(rng, _shifted_domain(rng))
    raise ValueError(
        "unknown distractor kind %r; choose from %s" % (kind, ", ".join(DISTRACTOR_KINDS))
    )


def _annotation_xml(
    folder: str, image_id: str, sample: SyntheticImage, kind: Optional[str] = None
) -> bytes:
    """The VOC annotation of one image (coordinates 1-based and inclusive, as in real VOC); ``kind``,
    where given, is recorded in a :data:`KIND_TAG` element (Detectron2's VOC loader ignores it)."""
    root = ET.Element("annotation")
    height, width = sample.image.shape[:2]
    fields = {"folder": folder, "filename": image_id + ".jpg"}
    for tag, text in fields.items():
        ET.SubElement(root, tag).text = text
    source = ET.SubElement(root, "source")
    for tag, text in (
        ("database", "imagescore_det synthetic VOC"),
        ("annotation", "imagescore_det"),
        ("image", "synthetic"),
    ):
        ET.SubElement(source, tag).text = text
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    if kind is not None:
        ET.SubElement(root, KIND_TAG).text = kind
    for obj in sample.objects:
        node = ET.SubElement(root, "object")
        for tag, text in (
            ("name", obj.name),
            ("pose", "Unspecified"),
            ("truncated", str(int(obj.truncated))),
            ("difficult", "0"),
        ):
            ET.SubElement(node, tag).text = text
        bndbox = ET.SubElement(node, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), obj.box):
            ET.SubElement(bndbox, tag).text = str(value)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8") + b"\n"


def read_kind(xml_file: str) -> Optional[str]:
    """The kind an annotation file records (:data:`KIND_TAG`), or None where it records none."""
    return ET.parse(xml_file).getroot().findtext(KIND_TAG)


def check_distractors(
    fraction, kinds, *, names: Tuple[str, str] = ("distractor_fraction", "distractors")
) -> Tuple[float, Tuple[str, ...]]:
    """``(fraction, kinds)`` checked; a ValueError names the setting (``names``: how the caller calls them)."""
    fraction_name, kinds_name = names
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, (int, float, np.integer, np.floating))
        or not 0 <= fraction < 1
    ):
        raise ValueError(
            "%s is %r; it must be a number in [0, 1): the share of the unlabelled images that are "
            "distractors" % (fraction_name, fraction)
        )
    if isinstance(kinds, str) or not kinds:
        raise ValueError(
            "%s is %r; it must list at least one distractor kind of %s"
            % (kinds_name, kinds, ", ".join(DISTRACTOR_KINDS))
        )
    unknown = [kind for kind in kinds if kind not in DISTRACTOR_KINDS]
    if unknown:
        raise ValueError(
            "%s names the unknown kind(s) %s; choose from %s"
            % (kinds_name, ", ".join(map(repr, unknown)), ", ".join(DISTRACTOR_KINDS))
        )
    repeated = sorted({kind for kind in kinds if list(kinds).count(kind) > 1})
    if repeated:
        raise ValueError(
            "%s names %s more than once: the kinds are drawn in equal shares"
            % (kinds_name, ", ".join(repeated))
        )
    if fraction > 0 and "photos" in kinds and importlib.util.find_spec("skimage") is None:
        raise ValueError(
            "%s asks for 'photos', crops of scikit-image's bundled photos, but scikit-image is not "
            "installed (pip install scikit-image)" % kinds_name
        )
    return float(fraction), tuple(kinds)


def _validated_settings(
    num_labelled,
    num_unlabelled,
    num_test,
    seed,
    distractor_fraction=0.0,
    distractors: Sequence[str] = DISTRACTOR_KINDS,
) -> Dict[str, object]:
    fraction, kinds = check_distractors(distractor_fraction, distractors)
    settings = {
        "num_labelled": num_labelled,
        "num_unlabelled": num_unlabelled,
        "num_test": num_test,
        "seed": seed,
    }
    for key, value in settings.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{key} must be a non-negative integer, got {value!r}")
        if key != "seed" and value > MAX_IMAGES_PER_SPLIT:
            raise ValueError(
                f"{key}={value} exceeds the {MAX_IMAGES_PER_SPLIT} images one split can hold"
            )
        if key != "seed" and value == 1:
            raise ValueError(
                f"{key}=1: Detectron2's load_voc_instances cannot read a one-line split file; "
                "use 0 or at least 2"
            )
    if num_labelled + num_unlabelled + num_test == 0:
        raise ValueError("num_labelled, num_unlabelled and num_test are all 0: nothing to generate")
    counts = {key: int(value) for key, value in settings.items()}
    return dict(counts, distractor_fraction=fraction, distractors=list(kinds))


def _manifest_settings(settings: Dict[str, object]) -> Dict[str, object]:
    """What the manifest records: a clean set (fraction 0) records no distractor setting, as before they existed."""
    if settings["distractor_fraction"] > 0:
        return dict(settings)
    return {
        key: value
        for key, value in settings.items()
        if key not in ("distractor_fraction", "distractors")
    }


def distractor_kinds(settings: Dict[str, object]) -> Dict[int, str]:
    """Unlabelled image number -> distractor kind, for the distractors only (the rest are clean).

    ``round(fraction x num_unlabelled)`` images (halves up), drawn by a permutation of their own
    stream, take the kinds in turn, so each kind's count is within one of the others' and a smaller
    fraction's distractors are a subset of a larger one's.
    """
    total = settings["num_unlabelled"]
    count = int(math.floor(settings["distractor_fraction"] * total + 0.5))
    order = np.random.default_rng([settings["seed"], 2012, 0, DISTRACTOR_STREAM]).permutation(total)
    kinds = settings["distractors"]
    return {int(order[i]) + 1: kinds[i % len(kinds)] for i in range(count)}


def _split_ids(settings: Dict[str, object]) -> Dict[str, List[Tuple[int, int]]]:
    """Split key -> [(year, number)] of its images."""
    return {
        key: [(year, first + i) for i in range(1, settings["num_" + key] + 1)]
        for key, _, year, _, first in SPLITS
    }


def synthetic_voc_splits(out_dir: str) -> Dict[str, Tuple[str, str]]:
    """Split key ("labelled", "unlabelled", "test") -> (VOC year folder, split name) for load_voc_instances."""
    out_dir = os.path.abspath(out_dir)
    return {key: (os.path.join(out_dir, folder), split) for key, folder, _, split, _ in SPLITS}


def _write_dataset(root: str, settings: Dict[str, object]) -> None:
    ids = _split_ids(settings)
    distractors = distractor_kinds(settings)
    uncurated = settings["distractor_fraction"] > 0  # its unlabelled images record their kinds
    for _, folder, _, _, _ in SPLITS:
        for sub in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main")):
            os.makedirs(os.path.join(root, folder, sub), exist_ok=True)
    jobs = [
        (folder, year, number, uncurated and key == "unlabelled")
        for key, folder, _, _, _ in SPLITS
        for year, number in ids[key]
    ]
    for folder, year, number, has_kind in tqdm(jobs, desc="synthetic VOC", unit="img"):
        kind = distractors.get(number, CLEAN_KIND) if has_kind else None
        if kind in (None, CLEAN_KIND):
            sample = render_synthetic_image(settings["seed"], year, number)
        else:
            sample = render_distractor(settings["seed"], year, number, kind)
        image_id = f"{year}_{number:06d}"
        Image.fromarray(sample.image).save(
            os.path.join(root, folder, "JPEGImages", image_id + ".jpg"), quality=sample.jpeg_quality
        )
        with open(os.path.join(root, folder, "Annotations", image_id + ".xml"), "wb") as f:
            f.write(_annotation_xml(folder, image_id, sample, kind))
    for key, folder, _, split, _ in SPLITS:
        with open(os.path.join(root, folder, "ImageSets", "Main", split + ".txt"), "w") as f:
            f.writelines(f"{year}_{number:06d}\n" for year, number in ids[key])
    manifest = dict(
        _manifest_settings(settings),
        generator_version=GENERATOR_VERSION,
        classes=list(SYNTHETIC_CLASSES),
    )
    if uncurated:
        manifest["distractor_counts"] = {
            kind: sum(found == kind for found in distractors.values())
            for kind in settings["distractors"]
        }
    with open(os.path.join(root, MANIFEST_NAME), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)


def generate_synthetic_voc(
    out_dir: str,
    *,
    num_labelled: int,
    num_unlabelled: int,
    num_test: int,
    seed: int = 0,
    distractor_fraction: float = 0.0,
    distractors: Sequence[str] = DISTRACTOR_KINDS,
    overwrite: bool = False,
) -> Dict[str, Tuple[str, str]]:
    """Write the synthetic VOC set to ``out_dir`` and return :func:`synthetic_voc_splits` for it.

    ``distractor_fraction`` of the unlabelled images are distractors of the ``distractors`` kinds
    (module docstring); at 0 the set is the clean one, whatever ``distractors`` lists.

    The set is built in a temporary folder beside ``out_dir`` and renamed into place at the end, so
    a failure never leaves a half-written ``out_dir``. A non-empty ``out_dir`` is replaced only
    with ``overwrite=True``.
    """
    settings = _validated_settings(
        num_labelled, num_unlabelled, num_test, seed, distractor_fraction, distractors
    )
    out_dir = os.path.abspath(out_dir)
    if os.path.lexists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"out_dir {out_dir} exists and is not a folder")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
        raise ValueError(
            f"out_dir {out_dir} exists and is not empty; pass overwrite=True (--overwrite) to replace it"
        )
    with atomic_folder(out_dir) as built:
        _write_dataset(built, settings)
    return synthetic_voc_splits(out_dir)


def _problems(out_dir: str, settings: Dict[str, object]) -> List[str]:
    """What keeps ``out_dir`` from being the finished set these settings describe (empty when it is)."""
    try:
        with open(os.path.join(out_dir, MANIFEST_NAME)) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return [f"{MANIFEST_NAME} is missing or unreadable"]
    wanted = dict(_manifest_settings(settings), generator_version=GENERATOR_VERSION)
    problems = [
        f"{key} is {manifest.get(key)!r}, wanted {value!r}"
        for key, value in wanted.items()
        if manifest.get(key) != value
    ]
    ids = _split_ids(settings)
    for key, folder, _, split, _ in SPLITS:
        split_file = os.path.join(out_dir, folder, "ImageSets", "Main", split + ".txt")
        expected = [f"{year}_{number:06d}" for year, number in ids[key]]
        if not os.path.isfile(split_file):
            problems.append(f"{split_file} is missing")
            continue
        with open(split_file) as f:
            if f.read().split() != expected:
                problems.append(f"{split_file} does not list the expected {len(expected)} ids")
        for image_id in expected:
            for sub, ext in (("JPEGImages", ".jpg"), ("Annotations", ".xml")):
                path = os.path.join(out_dir, folder, sub, image_id + ext)
                if not os.path.isfile(path):
                    problems.append(f"{path} is missing")
    return problems


def ensure_synthetic_voc(
    out_dir: str,
    *,
    num_labelled: int,
    num_unlabelled: int,
    num_test: int,
    seed: int = 0,
    distractor_fraction: float = 0.0,
    distractors: Sequence[str] = DISTRACTOR_KINDS,
    overwrite: bool = False,
) -> Dict[str, Tuple[str, str]]:
    """Generate the set only if ``out_dir`` is missing or empty; reuse it when complete and matching.

    A folder that is incomplete or was made with other settings raises ValueError (or, with
    ``overwrite=True``, is regenerated) rather than being used.
    """
    settings = _validated_settings(
        num_labelled, num_unlabelled, num_test, seed, distractor_fraction, distractors
    )
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        problems = _problems(out_dir, settings)
        if not problems:
            logger.info("Reusing the synthetic VOC set in %s", out_dir)
            return synthetic_voc_splits(out_dir)
        summary = "; ".join(problems[:3]) + (
            f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        )
        if not overwrite:
            raise ValueError(
                f"{out_dir} is incomplete or was generated with other settings ({summary}); "
                "delete it or regenerate with overwrite=True (--overwrite)"
            )
        logger.warning("Regenerating %s, which is incomplete or differs (%s)", out_dir, summary)
    return generate_synthetic_voc(out_dir, overwrite=overwrite, **settings)


def main(argv=None) -> Dict[str, Tuple[str, str]]:
    default_out = os.path.join(os.environ.get("DETECTRON2_DATASETS", "datasets"), "synthetic_voc")
    parser = argparse.ArgumentParser(
        prog="python -m imagescore_det.data.synthetic",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--out",
        default=default_out,
        help="folder to create, holding VOC2007/ and VOC2012/ ($DETECTRON2_DATASETS/synthetic_voc)",
    )
    parser.add_argument(
        "--labelled", type=int, default=240, help="images in VOC2007 trainval (the labelled set)"
    )
    parser.add_argument(
        "--unlabelled",
        type=int,
        default=360,
        help="images in VOC2012 trainval (the unlabelled set; annotations kept as ground truth)",
    )
    parser.add_argument("--test", type=int, default=120, help="images in VOC2007 test")
    parser.add_argument(
        "--seed", type=int, default=0, help="non-negative seed; with the counts it fixes every byte"
    )
    parser.add_argument(
        "--distractor-fraction",
        type=float,
        default=0.0,
        help="share of the unlabelled images that are distractors, in [0, 1) (0: the clean set)",
    )
    parser.add_argument(
        "--distractors",
        nargs="+",
        default=list(DISTRACTOR_KINDS),
        choices=DISTRACTOR_KINDS,
        help="the distractor kinds, drawn in equal shares",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    splits = generate_synthetic_voc(
        args.out,
        num_labelled=args.labelled,
        num_unlabelled=args.unlabelled,
        num_test=args.test,
        seed=args.seed,
        distractor_fraction=args.distractor_fraction,
        distractors=args.distractors,
        overwrite=args.overwrite,
    )
    total = args.labelled + args.unlabelled + args.test
    elapsed = time.perf_counter() - start
    print(
        f"Wrote {total} images to {os.path.abspath(args.out)} in {elapsed:.1f} s "
        f"({1000 * elapsed / total:.1f} ms/image)"
    )
    return splits


if __name__ == "__main__":
    main()
