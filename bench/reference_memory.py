"""A reference's memory must not grow with the reference set: measure N and 4N images apart.

Each measurement runs in a fresh process (so none inherits another's allocations) over the synthetic
labelled set, largest images first (so that both sizes meet the same largest image, which sets the
activation peak), through Detectron2's test loader with its workers off (every byte is counted in
that one process), and reports its peak resident set size. Two passes are measured at N and 4N:
plain inference of the detector, and the engine's own reference pass. The script prints the peaks
and the ratios 4N / N.

On CPU, oneDNN keeps a primitive cache entry per input shape, and detection images all differ in
shape, so by default the process grows with every new image in plain inference too: that growth
belongs to PyTorch, not to scoring. The children therefore run with ONEDNN_PRIMITIVE_CACHE_CAPACITY=0
(``--onednn-cache default`` shows the uncapped behaviour).

    python bench/reference_memory.py                      # N = 10, VGG16, shortest side 300
    python bench/reference_memory.py --images 25 --config configs/Base-R50-C4.yaml
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
PASSES = ("inference", "reference")


def largest_first(records):
    return sorted(records, key=lambda r: (-r["height"] * r["width"], r["image_id"]))


def measure_child(args) -> dict:
    """Runs in the child process: one pass over the first ``args.child`` labelled images."""
    from detectron2.data import DatasetCatalog, build_detection_test_loader
    from detectron2.modeling import build_model

    from imagescore_det import build_config
    from imagescore_det.data.voc import register_synthetic_voc
    from imagescore_det.detection.modes import ImageMode, build_references

    cfg = build_config(
        args.config,
        ["MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", 0, "INPUT.MIN_SIZE_TEST", args.min_size],
    )
    register_synthetic_voc(args.data)
    subset = "bench_memory_%d" % args.child
    DatasetCatalog.register(
        subset, lambda: largest_first(DatasetCatalog.get(LABELLED_SET))[: args.child]
    )
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    loader = build_detection_test_loader(cfg, subset)
    if args.pass_name == "inference":
        with torch.inference_mode():
            images = sum(len(model(inputs)) for inputs in loader)
    else:
        reference = build_references(model, loader, [ImageMode(cfg, model, "bench")])["image"]
        images = reference.metadata["num_images"]
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"images": images, "peak_mib": peak_kib / 1024.0}


def run_child(args, pass_name: str, count: int) -> dict:
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        str(count),
        "--pass-name",
        pass_name,
        "--data",
        args.data,
        "--config",
        args.config,
        "--min-size",
        str(args.min_size),
    ]
    env = dict(os.environ)
    if args.onednn_cache != "default":
        env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = args.onednn_cache
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(output.strip().splitlines()[-1])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--images", type=int, default=10, help="N: the small set has N images, the large one 4N"
    )
    parser.add_argument(
        "--config",
        default=os.path.join(ROOT, "configs", "Base-VGG16.yaml"),
        help="model config (recording wrapper backbone)",
    )
    parser.add_argument(
        "--min-size", type=int, default=300, help="INPUT.MIN_SIZE_TEST: shortest image side"
    )
    parser.add_argument(
        "--data",
        default=None,
        help="synthetic VOC folder; default: generated in a temporary folder",
    )
    parser.add_argument(
        "--onednn-cache",
        default="0",
        help="ONEDNN_PRIMITIVE_CACHE_CAPACITY for the measured processes; 'default' leaves oneDNN's own (default: 0)",
    )
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--pass-name", choices=PASSES, default="reference", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(args) -> None:
    if args.child is not None:
        print(json.dumps(measure_child(args)))
        return
    from imagescore_det.data.synthetic import ensure_synthetic_voc

    with tempfile.TemporaryDirectory() as scratch:
        if args.data is None:
            args.data = os.path.join(scratch, "synthetic_voc")
            ensure_synthetic_voc(
                args.data, num_labelled=4 * args.images, num_unlabelled=2, num_test=2, seed=0
            )
        results = {
            name: [run_child(args, name, n) for n in (args.images, 4 * args.images)]
            for name in PASSES
        }
    print(
        "config: %s, shortest side: %d, ONEDNN_PRIMITIVE_CACHE_CAPACITY: %s"
        % (os.path.relpath(args.config, ROOT), args.min_size, args.onednn_cache)
    )
    print(
        "%-10s %16s %16s %12s"
        % (
            "pass",
            "peak MiB (N=%d)" % args.images,
            "peak MiB (4N=%d)" % (4 * args.images),
            "ratio 4N/N",
        )
    )
    for name, (small, large) in results.items():
        print(
            "%-10s %16.1f %16.1f %12.3f"
            % (name, small["peak_mib"], large["peak_mib"], large["peak_mib"] / small["peak_mib"])
        )
    small, large = results["reference"]
    print(
        "peak-memory ratio 4N / N of the reference pass: %.3f"
        % (large["peak_mib"] / small["peak_mib"])
    )


if __name__ == "__main__":
    main(parse_args())
