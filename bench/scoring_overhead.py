"""Scoring should cost what inference costs: measure both on the same images, side by side.

For each backbone, times (1) plain backbone inference, (2) scoring: the same forward pass with every
default layer recorded, cropped, pooled, compared with the reference and counted, and (3) the
reference pass: recording plus streaming into a ReferenceBuilder. The three run interleaved, in a
shuffled order each round, one image at a time as the engine runs them; the script prints the median
over rounds of the per-round ratios scoring / inference and reference / inference. Absolute times on
a shared machine are noise; the ratios are the result.

    python bench/scoring_overhead.py                      # VGG16 and R50-C4, shortest side 600
    python bench/scoring_overhead.py --min-size 400 --rounds 3 --backbones vgg16
"""

import argparse
import os
import random
import statistics
import time

import numpy as np
import torch
from skimage import data as sample_photos

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.data.transforms import ResizeShortestEdge  # noqa: E402
from detectron2.modeling import build_backbone  # noqa: E402
from detectron2.structures import ImageList  # noqa: E402

from imagescore_det import build_config  # noqa: E402
from imagescore_det.scoring import ReferenceBuilder  # noqa: E402

CONFIGS = {
    "vgg16": os.path.join(os.path.dirname(__file__), "..", "configs", "Base-VGG16.yaml"),
    "r50c4": os.path.join(os.path.dirname(__file__), "..", "configs", "Base-R50-C4.yaml"),
}
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "coins", "hubble_deep_field")


def load_backbone(name: str):
    cfg = build_config(CONFIGS[name], ["MODEL.DEVICE", "cpu"])
    torch.manual_seed(0)
    return cfg, build_backbone(cfg).eval()


def prepare_images(cfg, backbone, min_size: int, count: int):
    """Real photos resized to the detection resolution, normalised and padded as Detectron2 does."""
    resize = ResizeShortestEdge(min_size, max_size=1000 if min_size <= 600 else 1333)
    mean = torch.tensor(cfg.MODEL.PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(cfg.MODEL.PIXEL_STD).view(3, 1, 1)
    batches = []
    for photo in PHOTOS[:count]:
        array = getattr(sample_photos, photo)()
        array = np.stack([array] * 3, axis=-1) if array.ndim == 2 else array[..., :3]
        array = resize.get_transform(array).apply_image(array)
        tensor = torch.as_tensor(array.transpose(2, 0, 1).astype("float32"))
        image_list = ImageList.from_tensors([(tensor - mean) / std], backbone.size_divisibility)
        batches.append((image_list.tensor, image_list.image_sizes))
    return batches


def time_pass(run, batches) -> float:
    start = time.perf_counter()
    for batch in batches:
        run(batch)
    return time.perf_counter() - start


def measure(name: str, args) -> dict:
    cfg, backbone = load_backbone(name)
    batches = prepare_images(cfg, backbone, args.min_size, args.images)
    recorder = backbone.recorder(args.grid)

    def recorded(batch):
        tensor, image_sizes = batch
        recorder.set_image_sizes(image_sizes)
        with recorder:
            backbone(tensor)
        return recorder.pop()

    with torch.inference_mode():
        reference = ReferenceBuilder(grid=args.grid).update(recorded(batches[0])).finalize()
        passes = {
            "inference": lambda batch: backbone(batch[0]),
            "scoring": lambda batch: reference.score(recorded(batch)),
            "reference": lambda batch: ReferenceBuilder(grid=args.grid).update(recorded(batch)),
        }
        time_pass(passes["scoring"], batches)  # warm-up: allocator, kernels
        rounds = []
        order = list(passes)
        for _ in range(args.rounds):
            random.shuffle(order)
            rounds.append({pass_name: time_pass(passes[pass_name], batches) for pass_name in order})
    return {
        "layers": len(backbone.layers),
        "size": "x".join(map(str, batches[0][0].shape[-2:])),
        "inference_s": statistics.median(r["inference"] for r in rounds) / len(batches),
        "scoring": statistics.median(r["scoring"] / r["inference"] for r in rounds),
        "reference": statistics.median(r["reference"] / r["inference"] for r in rounds),
    }


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--backbones",
        nargs="+",
        choices=sorted(CONFIGS),
        default=["vgg16", "r50c4"],
        help="backbones to measure",
    )
    parser.add_argument(
        "--min-size",
        type=int,
        default=600,
        help="shortest image side in pixels (detection resolution)",
    )
    parser.add_argument(
        "--images",
        type=int,
        default=6,
        choices=range(1, len(PHOTOS) + 1),
        metavar="N",
        help="photos per round (1-%d)" % len(PHOTOS),
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=7,
        help="interleaved rounds; the median ratio over rounds is printed",
    )
    parser.add_argument("--grid", type=int, default=8, help="IMAGESCORE.GRID used when scoring")
    parser.add_argument("--seed", type=int, default=0, help="seed of the order shuffle")
    return parser.parse_args(argv)


def main(args) -> None:
    random.seed(args.seed)
    print(
        "threads: %d, shortest side: %d, images: %d, rounds: %d, grid: %d"
        % (torch.get_num_threads(), args.min_size, args.images, args.rounds, args.grid)
    )
    print(
        "%-8s %7s %11s %13s %16s %18s"
        % (
            "backbone",
            "layers",
            "input",
            "inference/img",
            "scoring/inference",
            "reference/inference",
        )
    )
    for name in args.backbones:
        result = measure(name, args)
        print(
            "%-8s %7d %11s %12.2fs %16.3f %18.3f"
            % (
                name,
                result["layers"],
                result["size"],
                result["inference_s"],
                result["scoring"],
                result["reference"],
            )
        )


if __name__ == "__main__":
    main(parse_args())
