"""A reference's memory must not grow with the reference set: measure N and 4N images apart.

Each size runs in a fresh process (so neither inherits the other's allocations) that builds the
reference with the engine's own reference pass over the synthetic labelled set (largest images
first, so that both runs meet the same largest image), through Detectron2's test loader (workers off, so every byte is counted in that one process), and reports its peak
resident set size. The script prints both peaks and the ratio 4N / N.

    python bench/reference_memory.py                      # N = 20, VGG16, shortest side 400
    python bench/reference_memory.py --images 50 --config configs/Base-R50-C4.yaml
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile

import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
LABELLED_SET = "synthetic_voc_2007_trainval"


def largest_first(records):
    """Largest images first, so both sizes contain the images that set the activation peak.

    Without this, the 4N run would likely meet a larger image than the N run, and the ratio would
    measure image size instead of dataset size.
    """
    return sorted(records, key=lambda r: (-r["height"] * r["width"], r["image_id"]))


def build_reference_child(args) -> dict:
    """Runs in the child process: one reference pass over the first ``args.child`` labelled images."""
    from detectron2.config import get_cfg
    from detectron2.data import DatasetCatalog, build_detection_test_loader
    from detectron2.modeling import build_model

    from imagescore_det import add_imagescore_config
    from imagescore_det.data.voc import register_synthetic_voc
    from imagescore_det.engine import build_reference

    cfg = get_cfg()
    add_imagescore_config(cfg)
    cfg.merge_from_file(args.config)
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", 0, "INPUT.MIN_SIZE_TEST", args.min_size])
    register_synthetic_voc(args.data)
    subset = "bench_reference_%d" % args.child
    DatasetCatalog.register(subset, lambda: largest_first(DatasetCatalog.get(LABELLED_SET))[: args.child])
    torch.manual_seed(0)
    model = build_model(cfg)
    reference = build_reference(
        model,
        build_detection_test_loader(cfg, subset),
        grid=cfg.IMAGESCORE.GRID,
        threshold_ratio=cfg.IMAGESCORE.THRESHOLD_RATIO,
        threshold_stat=cfg.IMAGESCORE.THRESHOLD_STAT,
        description="bench",
    )
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"images": reference.metadata["num_images"], "peak_mib": peak_kib / 1024.0}


def run_child(args, count: int) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--child", str(count), "--data", args.data,
               "--config", args.config, "--min-size", str(args.min_size)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20, help="N: the small reference set has N images, the large one 4N")
    parser.add_argument("--config", default=os.path.join(ROOT, "configs", "Base-VGG16.yaml"), help="model config (recording wrapper backbone)")
    parser.add_argument("--min-size", type=int, default=400, help="INPUT.MIN_SIZE_TEST: shortest image side")
    parser.add_argument("--data", default=None, help="synthetic VOC folder; default: generated in a temporary folder")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(args) -> None:
    if args.child is not None:
        print(json.dumps(build_reference_child(args)))
        return
    from imagescore_det.data.synthetic import ensure_synthetic_voc

    with tempfile.TemporaryDirectory() as scratch:
        if args.data is None:
            args.data = os.path.join(scratch, "synthetic_voc")
            ensure_synthetic_voc(args.data, num_labelled=4 * args.images, num_unlabelled=2, num_test=2, seed=0)
        small, large = run_child(args, args.images), run_child(args, 4 * args.images)
    print("config: %s, shortest side: %d" % (os.path.relpath(args.config, ROOT), args.min_size))
    print("%8s %14s" % ("images", "peak RSS (MiB)"))
    for result in (small, large):
        print("%8d %14.1f" % (result["images"], result["peak_mib"]))
    print("peak-memory ratio 4N / N: %.3f" % (large["peak_mib"] / small["peak_mib"]))


if __name__ == "__main__":
    main(parse_args())
