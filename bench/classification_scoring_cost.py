"""The image score's cost per epoch of classification training, against one training epoch.

Before every epoch of phase 2 the image score needs (1) per-class references from the labelled
images and (2) a prediction with scores for every additional image. Softmax selection needs only a
plain prediction of the additional images. This script trains one epoch on the labelled images
(config as given, seed 0), then times, interleaved over rounds, the plain prediction of the
additional images, ``predict_and_score`` on them and ``build_class_references`` (the functions
training uses), and prints each against the epoch, in CPU time of this process (robust on shared
cores) and wall time. The image score's own cost = scoring pass - plain prediction + references.

    python bench/classification_scoring_cost.py --config-file configs/classification/fashion_mnist_vgg.yaml
"""

import argparse
import statistics
import time

import torch

from imagescore_det.classification import (
    build_class_references,
    load_classification_config,
    load_split,
    predict_and_score,
    recorded_layers,
)
from imagescore_det.classification.experiment import model_from_cfg
from imagescore_det.classification.training import (
    TrainingState,
    derived_seed,
    seed_everything,
    train_epoch,
)


def timed(function):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.process_time() - cpu, time.perf_counter() - wall


def plain_prediction(model, images, batch_size):
    """What softmax selection needs: predicted class and max probability, no recording."""
    model.eval()
    with torch.inference_mode():
        return torch.cat(
            [
                torch.softmax(model(images[i : i + batch_size]), 1).max(1)[0]
                for i in range(0, len(images), batch_size)
            ]
        )


def main(args):
    torch.set_num_threads(args.num_threads)
    cfg = load_classification_config(args.config_file, args.opts)
    split = load_split(cfg)
    device = torch.device("cpu")
    seed_everything(0)
    state = TrainingState.create(
        model_from_cfg(cfg, split), lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY
    )
    generator = torch.Generator().manual_seed(derived_seed(0, 1))

    def epoch():
        return train_epoch(
            state,
            [split.labelled.images],
            [split.labelled.labels],
            batch_size=cfg.SOLVER.BATCH_SIZE,
            generator=generator,
            device=device,
        )

    _, epoch_cpu, epoch_wall = timed(epoch)
    model, layers = state.model, recorded_layers(state.model)
    options = dict(batch_size=cfg.TEST.BATCH_SIZE, device=device)
    stats = dict(
        threshold_ratio=cfg.IMAGESCORE.THRESHOLD_RATIO, threshold_stat=cfg.IMAGESCORE.THRESHOLD_STAT
    )
    references = build_class_references(
        model, layers, split.labelled, split.num_classes, **options, **stats
    )
    passes = {
        "plain prediction, additional": lambda: plain_prediction(
            model, split.additional.images, cfg.TEST.BATCH_SIZE
        ),
        "prediction + image score, additional": lambda: predict_and_score(
            model, layers, references, split.additional, formula=cfg.IMAGESCORE.FORMULA, **options
        ),
        "class references, labelled": lambda: build_class_references(
            model, layers, split.labelled, split.num_classes, **options, **stats
        ),
    }
    times = {name: ([], []) for name in passes}
    for _ in range(args.rounds):
        for name, function in passes.items():
            _, cpu, wall = timed(function)
            times[name][0].append(cpu)
            times[name][1].append(wall)
    median = {name: (statistics.median(c), statistics.median(w)) for name, (c, w) in times.items()}
    print(
        "%s, %s (width %d), %d labelled / %d additional images, 1 thread; medians of %d rounds"
        % (
            cfg.DATA.NAME,
            cfg.MODEL.NAME,
            cfg.MODEL.WIDTH,
            len(split.labelled),
            len(split.additional),
            args.rounds,
        )
    )
    print("%-42s %9s %9s %14s" % ("pass", "CPU s", "wall s", "CPU / epoch"))
    print("%-42s %9.2f %9.2f %14.3f" % ("training epoch, labelled", epoch_cpu, epoch_wall, 1.0))
    for name, (cpu, wall) in median.items():
        print("%-42s %9.2f %9.2f %14.3f" % (name, cpu, wall, cpu / epoch_cpu))
    own = (
        median["prediction + image score, additional"][0]
        - median["plain prediction, additional"][0]
    )
    print(
        "%-42s %9.2f %9s %14.3f"
        % ("image score's own cost (score - plain)", own, "", own / epoch_cpu)
    )
    total = own + median["class references, labelled"][0]
    print(
        "%-42s %9.2f %9s %14.3f"
        % ("  + references (per epoch, image score only)", total, "", total / epoch_cpu)
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True)
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved repetitions of each pass (median)"
    )
    parser.add_argument("--num-threads", type=int, default=1)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides")
    main(parser.parse_args())
