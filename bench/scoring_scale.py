"""The scoring pass at scale, side by side in one run: its time against Detectron2's plain inference
at the same batch size, the speed-up of batch 8 over batch 1, and its peak memory over N and 4N images.

1. Throughput. Over the same unlabelled images and loader settings (Detectron2's test loader, workers
   off), ``model(inputs)`` alone (plain inference) and the engine's scoring pass (``score_images``:
   the same forward with the backbone recorder attached, crop, pool, compare, count, and the
   per-image records) run interleaved in a shuffled order for several rounds, at each batch size;
   the script prints images per second, the median per-round ratio scoring / inference, and the
   speed-up of the largest batch over batch 1.
2. Memory. ``score_unlabelled`` (reference pass, scoring pass writing shards, gather) over N and 4N
   unlabelled images, each in a fresh process (largest images first, so both meet the same largest
   image), with ONEDNN_PRIMITIVE_CACHE_CAPACITY=0 as tools/score_voc.py sets it; prints the peaks
   and their ratio (see bench/reference_memory.py for why the cache is capped).

The detector is the demo's slim VGG16 Faster R-CNN (configs/demo_ssl.yaml), untrained (seed 0), on a
synthetic set generated in a temporary folder; absolute times on a shared machine are noise, the
ratios are the result.

    OMP_NUM_THREADS=1 python bench/scoring_scale.py                 # 48 images, batch 1 and 8, N = 40
    python bench/scoring_scale.py --images 12 IMAGESCORE.VGG.WIDTH_DIVISOR 1 INPUT.MIN_SIZE_TEST 600   # VGG16
    python bench/scoring_scale.py --images 96 --rounds 5 --batch-sizes 1 4 8 --memory-images 100
"""

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CONFIG = os.path.join(ROOT, "configs", "demo_ssl.yaml")
POOL = "synthetic_voc_2012_trainval"


def config(data_root: str, batch_size: int, pool: str = POOL, extra=(), opts=()):
    from imagescore_det import build_config
    from imagescore_det.data.voc import register_synthetic_voc

    register_synthetic_voc(data_root)
    user_opts = opts
    opts = ["MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", 0, "IMAGESCORE.PSEUDO_SCORE_THRESH"]
    opts += [0.5, "IMAGESCORE.SCORE_BATCH_SIZE", batch_size, "IMAGESCORE.UNLABELLED_DATASETS"]
    return build_config(CONFIG, opts + [(pool,)] + list(extra) + list(user_opts))


def model_for(cfg):
    from detectron2.modeling import build_model

    torch.manual_seed(0)
    return build_model(cfg).eval()


def throughput(args) -> None:
    from imagescore_det.detection.modes import ImageMode, build_references, score_images
    from imagescore_det.detection.passes import labelled_loader, records_loader, unlabelled_records

    cfg = config(args.data, 1, opts=args.opts)
    model = model_for(cfg)
    scorer = ImageMode(cfg, model, "bench")
    references = build_references(model, labelled_loader(cfg), [scorer])
    records = unlabelled_records(cfg)[: args.images]

    def inference(cfg):
        with torch.inference_mode():
            for inputs in records_loader(cfg, records):
                model(inputs)

    def scoring(cfg):
        score_images(
            model, records_loader(cfg, records), [scorer], references, pseudo_score_thresh=0.5
        )

    times = {(name, b): [] for name in ("inference", "scoring") for b in args.batch_sizes}
    rng = random.Random(0)
    for _ in range(args.rounds):
        runs = list(times)
        rng.shuffle(runs)
        for name, batch_size in runs:
            run_cfg = config(args.data, batch_size, opts=args.opts)
            start = time.perf_counter()
            (inference if name == "inference" else scoring)(run_cfg)
            times[name, batch_size].append(time.perf_counter() - start)
    print("Throughput, %d images x %d rounds (median):" % (len(records), args.rounds))
    print("%6s %16s %16s %18s" % ("batch", "inference img/s", "scoring img/s", "scoring/inference"))
    for b in args.batch_sizes:
        ratio = statistics.median(s / i for s, i in zip(times["scoring", b], times["inference", b]))
        print(
            "%6d %16.2f %16.2f %18.3f"
            % (
                b,
                len(records) / statistics.median(times["inference", b]),
                len(records) / statistics.median(times["scoring", b]),
                ratio,
            )
        )
    low, high = min(args.batch_sizes), max(args.batch_sizes)
    for name in ("inference", "scoring"):
        print(
            "speed-up of batch %d over batch %d, %s: %.2fx"
            % (
                high,
                low,
                name,
                statistics.median(times[name, low]) / statistics.median(times[name, high]),
            )
        )


def memory_child(args) -> dict:
    """In a fresh process: score_unlabelled over the ``args.child`` largest unlabelled images."""
    from detectron2.data import DatasetCatalog

    from imagescore_det.data.voc import register_synthetic_voc
    from imagescore_det.detection.modes import score_unlabelled

    register_synthetic_voc(args.data)
    pool = sorted(
        DatasetCatalog.get(POOL), key=lambda r: (-r["height"] * r["width"], r["image_id"])
    )
    DatasetCatalog.register("bench_pool", lambda: pool[: args.child])
    cfg = config(
        args.data,
        args.memory_batch,
        "bench_pool",
        ["IMAGESCORE.SCORE_SHARD_SIZE", max(1, args.child // 4)],
        opts=args.opts,
    )
    with tempfile.TemporaryDirectory() as shards:
        _, images = score_unlabelled(cfg, model_for(cfg), description="bench", shard_dir=shards)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"images": len(images), "peak_mib": peak_kib / 1024.0}


def memory(args) -> None:
    peaks = []
    for count in (args.memory_images, 4 * args.memory_images):
        command = [sys.executable, os.path.abspath(__file__), "--child", str(count)]
        command += ["--data", args.data, "--memory-batch", str(args.memory_batch), *args.opts]
        env = dict(os.environ, ONEDNN_PRIMITIVE_CACHE_CAPACITY="0")
        output = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
        peaks.append(json.loads(output.stdout.strip().splitlines()[-1]))
    small, large = peaks
    print(
        "Peak RSS of score_unlabelled (batch %d, shards of N/4): N=%d %.1f MiB, 4N=%d %.1f MiB, "
        "ratio 4N/N %.3f"
        % (
            args.memory_batch,
            small["images"],
            small["peak_mib"],
            large["images"],
            large["peak_mib"],
            large["peak_mib"] / small["peak_mib"],
        )
    )


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=48, help="images per throughput run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--memory-images", type=int, default=40, help="N of the memory runs")
    parser.add_argument("--memory-batch", type=int, default=1, help="batch size of those runs")
    parser.add_argument("--data", default=None, help="synthetic VOC folder (default: generated)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="KEY VALUE overrides of the detector's config",
    )
    return parser.parse_args(argv)


def main(args) -> None:
    if args.child is not None:
        print(json.dumps(memory_child(args)))
        return
    from imagescore_det.data.synthetic import ensure_synthetic_voc

    with tempfile.TemporaryDirectory() as scratch:
        if args.data is None:
            args.data = os.path.join(scratch, "synthetic_voc")
            unlabelled = max(args.images, 4 * args.memory_images)
            ensure_synthetic_voc(
                args.data, num_labelled=20, num_unlabelled=unlabelled, num_test=2, seed=0
            )
        print(
            "torch threads: %d, config: configs/demo_ssl.yaml %s(untrained)"
            % (torch.get_num_threads(), " ".join(map(str, args.opts)) + " " if args.opts else "")
        )
        throughput(args)
        memory(args)


if __name__ == "__main__":
    main(parse_args())
