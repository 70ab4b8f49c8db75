"""Kill test of resumable scoring: a run SIGKILLed midway and restarted against an uninterrupted one.

``tools/score_voc.py`` writes its per-image records in shards of ``IMAGESCORE.SCORE_SHARD_SIZE``
images (``scoring_shards`` in ``--output-dir``), and a rerun reuses the finished shards. This script,
in one run and in one work folder:

1. generates a folder of N small JPEG images (96-160 px, random rectangles, ellipses and triangles
   on a noisy background; seeded) and the tiny synthetic VOC labelled set (6 / 10 / 4 images, seed 0)
   under its own ``DETECTRON2_DATASETS``;
2. trains the demo's slim VGG16 Faster R-CNN (configs/demo_ssl.yaml, an eighth of VGG16's channels,
   fc 32, shortest side 128) for 30 iterations with ``tools/train_net.py`` on the labelled set;
3. scores the folder (registered as ``pool=folder:<dir>``) with ``tools/score_voc.py`` in shards,
   uninterrupted, and times the process;
4. scores it again into another output folder, SIGKILLs the ``score_voc.py`` process as soon as
   ``--kill-after-shards`` shards exist, restarts it and times the restart;
5. prints both times, the restart's ``Reusing ...`` log line and whether ``image_scores.csv`` and
   ``imagescore_reference.pt`` are byte-identical and ``pseudo_labels.json`` is identical once
   ``info.date_created`` and the output-folder paths are masked (naming every field that differs
   before masking). It exits with status 1 if the outputs differ.

Every tool runs as a subprocess with this checkout on PYTHONPATH (and OMP_NUM_THREADS=1 unless set);
the times are wall times of the whole tool process (start-up, reference pass, scoring, writing).
Scoring keeps detections down to confidence 0 (IMAGESCORE.PSEUDO_SCORE_THRESH 0.0): the briefly
trained detector is not confident, and the pseudo-label file should hold boxes to compare. Logs
and outputs stay in ``--workdir`` when given (default: a temporary folder, removed at the end).

    OMP_NUM_THREADS=1 python bench/score_kill_resume.py          # 2000 images, shards of 200, kill after 4
    python bench/score_kill_resume.py --images 500 --shard-size 50 --kill-after-shards 3 --workdir /tmp/kill
"""

import argparse
import filecmp
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image, ImageDraw

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
CONFIG = os.path.join(ROOT, "configs", "demo_ssl.yaml")
TINY = {"num_labelled": 6, "num_unlabelled": 10, "num_test": 4, "seed": 0}
# The tiny detector, as the tests build it: shared by training and scoring.
MODEL_OPTS = [
    "IMAGESCORE.VGG.WIDTH_DIVISOR", "8",
    "MODEL.ROI_BOX_HEAD.FC_DIM", "32",
    "INPUT.MIN_SIZE_TEST", "128",
    "TEST.DETECTIONS_PER_IMAGE", "5",
    "IMAGESCORE.SYNTHETIC.NUM_LABELLED", str(TINY["num_labelled"]),
    "IMAGESCORE.SYNTHETIC.NUM_UNLABELLED", str(TINY["num_unlabelled"]),
    "IMAGESCORE.SYNTHETIC.NUM_TEST", str(TINY["num_test"]),
    "IMAGESCORE.SYNTHETIC.SEED", str(TINY["seed"]),
]  # fmt: skip
TRAIN_OPTS = [
    "INPUT.MIN_SIZE_TRAIN", "(128,)",
    "SOLVER.IMS_PER_BATCH", "2",
    "SOLVER.WARMUP_ITERS", "2",
    "SOLVER.CHECKPOINT_PERIOD", "100",
    "TEST.EVAL_PERIOD", "0",
    "IMAGESCORE.REGIME", "labelled_only",
    "SOLVER.MAX_ITER", "30",
]  # fmt: skip
SHARD = re.compile(r"^shard_\d{6}\.json$")
BYTE_FILES = ("image_scores.csv", "imagescore_reference.pt")
MASK = "<masked>"


def generate_images(folder: str, count: int, seed: int) -> None:
    """``count`` JPEGs of 96-160 px a side: a noisy tinted background with 1-3 filled shapes."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        w, h = (int(v) for v in rng.integers(96, 161, 2))
        pixels = rng.random((h, w, 3)) * 60 + rng.integers(0, 190, 3)
        image = Image.fromarray(pixels.astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(1, 4))):
            size = int(rng.integers(15, 45))
            x, y = int(rng.integers(0, w - size)), int(rng.integers(0, h - size))
            fill = tuple(int(c) for c in rng.integers(0, 256, 3))
            shape = int(rng.integers(0, 3))
            if shape == 0:
                draw.rectangle([x, y, x + size, y + size], fill=fill)
            elif shape == 1:
                draw.ellipse([x, y, x + size, y + size], fill=fill)
            else:
                draw.polygon([(x, y + size), (x + size, y + size), (x + size // 2, y)], fill=fill)
        image.save(os.path.join(folder, "img_%05d.jpg" % i), quality=90)


def tool(name: str, *args) -> list:
    return [sys.executable, os.path.join(ROOT, "tools", name), "--config-file", CONFIG, *args]


def score_command(weights: str, output_dir: str, folder: str, shard_size: int) -> list:
    return tool(
        "score_voc.py",
        "--weights",
        weights,
        "--output-dir",
        output_dir,
        *MODEL_OPTS,
        "IMAGESCORE.PSEUDO_SCORE_THRESH", "0.0",
        "IMAGESCORE.SCORE_BATCH_SIZE", "1",
        "IMAGESCORE.SCORE_SHARD_SIZE", str(shard_size),
        "IMAGESCORE.REGISTER_DATASETS", "('pool=folder:%s',)" % folder,
        "IMAGESCORE.UNLABELLED_DATASETS", "('pool',)",
    )  # fmt: skip


def start(command: list, log: str, env: dict) -> subprocess.Popen:
    with open(log, "w") as f:  # the child keeps its own descriptor
        return subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def run_timed(command: list, log: str, env: dict) -> float:
    """Runs ``command`` to the end (its output into ``log``); its wall time. Fails on non-zero."""
    begin = time.perf_counter()
    returncode = start(command, log, env).wait()
    seconds = time.perf_counter() - begin
    if returncode != 0:
        sys.exit(
            "%s failed with status %d; see %s" % (os.path.basename(command[1]), returncode, log)
        )
    return seconds


def shards_in(output_dir: str) -> list:
    folder = os.path.join(output_dir, "scoring_shards")
    return sorted(n for n in os.listdir(folder) if SHARD.match(n)) if os.path.isdir(folder) else []


def run_killed(command: list, log: str, env: dict, output_dir: str, kill_after: int):
    """Starts ``command``, SIGKILLs it once ``kill_after`` shards exist; (seconds, shards, status)."""
    begin = time.perf_counter()
    process = start(command, log, env)
    while len(shards_in(output_dir)) < kill_after:
        if process.poll() is not None:
            sys.exit(
                "score_voc.py ended (status %d) before %d shards existed: use more images or a "
                "smaller --shard-size; see %s" % (process.returncode, kill_after, log)
            )
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    returncode = process.wait()
    return time.perf_counter() - begin, shards_in(output_dir), returncode


def log_lines(log: str, pattern: str) -> list:
    with open(log) as f:
        return [line.rstrip("\n") for line in f if re.search(pattern, line)]


def differing_fields(a, b, prefix: str = "") -> list:
    """Dotted paths (list items as [i]) where two JSON values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        fields = []
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                fields.append(prefix + key)
            else:
                fields += differing_fields(a[key], b[key], prefix + key + ".")
        return fields
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        fields = []
        for i, (x, y) in enumerate(zip(a, b)):
            fields += differing_fields(x, y, prefix.rstrip(".") + "[%d]." % i)
        return fields
    return [] if a == b else [prefix.rstrip(".")]


def masked(value, output_dir: str):
    """``value`` with the output folder's path replaced by <OUTPUT> in every string."""
    if isinstance(value, dict):
        return {key: masked(item, output_dir) for key, item in value.items()}
    if isinstance(value, list):
        return [masked(item, output_dir) for item in value]
    if isinstance(value, str):
        return value.replace(output_dir, "<OUTPUT>")
    return value


def compare(full_dir: str, killed_dir: str) -> bool:
    """Prints the comparison of the two runs' files; True when they agree."""
    same = True
    for name in BYTE_FILES:
        identical = filecmp.cmp(
            os.path.join(full_dir, name), os.path.join(killed_dir, name), shallow=False
        )
        same &= identical
        print("%-26s %s" % (name, "byte-identical" if identical else "DIFFERENT"))
    labels = []
    for folder in (full_dir, killed_dir):
        with open(os.path.join(folder, "pseudo_labels.json")) as f:
            labels.append(json.load(f))
    raw = differing_fields(*labels)
    for data, folder in zip(labels, (full_dir, killed_dir)):
        data.get("info", {})["date_created"] = MASK
    left, right = (masked(data, folder) for data, folder in zip(labels, (full_dir, killed_dir)))
    rest = differing_fields(left, right)
    same &= not rest
    print(
        "%-26s %s; fields that differ before masking: %s"
        % (
            "pseudo_labels.json",
            "identical once masked" if not rest else "DIFFERENT once masked: " + ", ".join(rest),
            ", ".join(raw) or "none",
        )
    )
    print(
        "%-26s %d images, %d annotations"
        % ("", len(labels[0].get("images", [])), len(labels[0].get("annotations", [])))
    )
    return same


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=2000, help="images in the scored folder")
    parser.add_argument("--shard-size", type=int, default=200, help="IMAGESCORE.SCORE_SHARD_SIZE")
    parser.add_argument(
        "--kill-after-shards", type=int, default=4, help="SIGKILL once this many shards exist"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated images")
    parser.add_argument(
        "--workdir", default=None, help="folder for data, model, outputs, logs (default: temporary)"
    )
    return parser.parse_args(argv)


def main(args) -> int:
    if args.kill_after_shards * args.shard_size >= args.images:
        sys.exit("--kill-after-shards x --shard-size must be below --images")
    from imagescore_det.data.synthetic import generate_synthetic_voc
    from imagescore_det.data.voc import synthetic_root

    scratch = None
    if args.workdir is None:
        scratch = tempfile.TemporaryDirectory(prefix="score_kill_resume_")
        args.workdir = scratch.name
    work = os.path.abspath(args.workdir)
    folder, datasets = os.path.join(work, "folder"), os.path.join(work, "datasets")
    model_dir, logs = os.path.join(work, "model"), os.path.join(work, "logs")
    full_dir, killed_dir = os.path.join(work, "score_full"), os.path.join(work, "score_killed")
    for path in (folder, model_dir, full_dir, killed_dir):
        shutil.rmtree(path, ignore_errors=True)
    os.makedirs(logs, exist_ok=True)
    env = dict(os.environ, DETECTRON2_DATASETS=datasets)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    try:
        generate_images(folder, args.images, args.seed)
        if not os.path.isdir(synthetic_root(datasets, TINY)):
            generate_synthetic_voc(synthetic_root(datasets, TINY), **TINY)
        train = tool("train_net.py", *MODEL_OPTS, *TRAIN_OPTS, "OUTPUT_DIR", model_dir)
        train_seconds = run_timed(train, os.path.join(logs, "train.log"), env)
        weights = os.path.join(model_dir, "model_final.pth")

        full_log = os.path.join(logs, "score_full.log")
        full_seconds = run_timed(
            score_command(weights, full_dir, folder, args.shard_size), full_log, env
        )
        command = score_command(weights, killed_dir, folder, args.shard_size)
        killed_log = os.path.join(logs, "score_killed.log")
        kill_seconds, at_kill, kill_status = run_killed(
            command, killed_log, env, killed_dir, args.kill_after_shards
        )
        restart_log = os.path.join(logs, "score_restarted.log")
        restart_seconds = run_timed(command, restart_log, env)

        print(
            "Kill test: %d images (%s), shards of %d, SIGKILL once %d shard(s) exist; "
            "OMP_NUM_THREADS=%s; detector trained %d iterations in %.0f s"
            % (
                args.images,
                "96-160 px JPEGs, seed %d" % args.seed,
                args.shard_size,
                args.kill_after_shards,
                env["OMP_NUM_THREADS"],
                int(TRAIN_OPTS[TRAIN_OPTS.index("SOLVER.MAX_ITER") + 1]),
                train_seconds,
            )
        )
        print("%-26s %10s  %s" % ("run", "wall s", "scoring pass (score_voc.py's log)"))
        for name, seconds, log in (
            ("uninterrupted", full_seconds, full_log),
            ("killed (until SIGKILL)", kill_seconds, killed_log),
            ("restarted", restart_seconds, restart_log),
        ):
            passes = log_lines(log, r"Scoring pass: \d+ batches in ")
            print(
                "%-26s %10.1f  %s"
                % (name, seconds, passes[-1].split("]: ")[-1] if passes else "(killed mid-pass)")
            )
        print(
            "killed: status %d, %d shard(s) on disk: %s"
            % (kill_status, len(at_kill), " ".join(at_kill))
        )
        reusing = log_lines(restart_log, r"Reusing \d+ of \d+ images")
        print(
            "restart log: %s" % (reusing[-1].split("]: ")[-1] if reusing else "(no Reusing line)")
        )
        print("restart / uninterrupted wall time: %.2f" % (restart_seconds / full_seconds))
        same = compare(full_dir, killed_dir) and bool(reusing)
        print("RESULT: %s" % ("outputs agree" if same else "OUTPUTS DIFFER"))
        return 0 if same else 1
    finally:
        if scratch is not None:
            scratch.cleanup()


if __name__ == "__main__":
    sys.exit(main(parse_args()))
