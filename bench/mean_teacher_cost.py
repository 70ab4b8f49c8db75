"""What an online mean-teacher iteration costs: post-burn-in iterations over labelled-only ones, and
the gate's share of them, side by side in one run.

Trains tools/train_net.py's trainer once per gate (none, image, box): ``--burn-in`` labelled-only
iterations (IMAGESCORE.SWAP_ITER), then ``--iters`` mean-teacher iterations (the teacher labels
PSEUDO_RATIO x IMS_PER_BATCH unlabelled images per step, the student trains on both, the EMA
update). Prints the median seconds of a labelled-only iteration (every run's burn-in, its first
``--skip`` iterations left out), of a post-burn-in iteration per gate (its first ``--skip`` left
out), their ratio, and the gate's own seconds and share of a gated iteration: after training, the
same unlabelled batches go through the teacher's labelling with and without the gate (its recorder
on the forward, its scoring and filtering), interleaved, ``--gate-rounds`` times, and the median
difference is the gate's cost. (A gated iteration's total also moves with how many images the
gate leaves the student.) The references' rebuild is timed apart and spread over the config's
REFERENCE_PERIOD. Nothing is evaluated; absolute times on a shared machine are noise, the ratios
are the result.

    python bench/mean_teacher_cost.py --config-file configs/demo_ssl.yaml --burn-in 30 --iters 30
    python bench/mean_teacher_cost.py --config-file configs/demo_ssl.yaml --burn-in 4 --iters 4 \\
        --skip 1 --gate-rounds 3 SOLVER.IMS_PER_BATCH 2     # KEY VALUE overrides last
"""

import argparse
import statistics
import tempfile
import time

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.engine import HookBase, default_argument_parser  # noqa: E402

from imagescore_det.engine import ImageScoreTrainer, setup  # noqa: E402

GATES = ("none", "image", "box")


class StepTimer(HookBase):
    """Seconds of each iteration, from its step to the end of every hook's after_step."""

    def __init__(self):
        self.seconds = {}

    def before_step(self):
        self.start = time.perf_counter()

    def after_step(self):
        self.seconds[self.trainer.iter] = time.perf_counter() - self.start


def gate_seconds(hook, rounds: int) -> float:
    """Median seconds the gate adds to labelling one unlabelled batch (see the module docstring)."""
    gate, batches, added = hook.gate, iter(hook.unlabelled_loader()), []
    for round in range(rounds):
        batch, seconds = next(batches), {}
        for gated in (True, False) if round % 2 else (False, True):
            hook.gate = gate if gated else None
            start = time.perf_counter()
            images = hook.teacher_labels(batch)
            if gated:
                [gate.keep(image) for image in images]
            seconds[gated] = time.perf_counter() - start
        added.append(seconds[True] - seconds[False])
    hook.gate = gate
    return statistics.median(added)


def timed_run(args, gate: str, output_dir: str):
    """One training with ``gate``: {iteration: seconds}, the gate's seconds per batch and per
    reference rebuild (0 without a gate), and the config's REFERENCE_PERIOD."""
    swap = args.burn_in
    opts = list(args.opts) + [
        "IMAGESCORE.REGIME", "mean_teacher", "IMAGESCORE.MEAN_TEACHER.GATE", gate,
        "IMAGESCORE.SWAP_ITER", str(swap), "SOLVER.MAX_ITER", str(swap + args.iters),
        "DATASETS.TEST", "()", "TEST.EVAL_PERIOD", "0", "SOLVER.CHECKPOINT_PERIOD", "1000000",
        "OUTPUT_DIR", output_dir,
    ]  # fmt: skip
    # Not training=True: Detectron2's default_setup would add log handlers at every run.
    cfg = setup(default_argument_parser().parse_args(["--config-file", args.config_file, *opts]))
    period = cfg.IMAGESCORE.MEAN_TEACHER.REFERENCE_PERIOD
    cfg.defrost()
    cfg.IMAGESCORE.MEAN_TEACHER.REFERENCE_PERIOD = (
        0  # built once, at the burn-in's end; timed below
    )
    cfg.freeze()
    trainer = ImageScoreTrainer(cfg)
    timer = StepTimer()
    trainer.register_hooks([timer])
    trainer.resume_or_load(resume=False)
    trainer.train()
    per_batch = rebuild = 0.0
    if trainer.mean_teacher.gate is not None:
        per_batch = gate_seconds(trainer.mean_teacher, args.gate_rounds)
        start = time.perf_counter()
        trainer.mean_teacher.gate.rebuild(trainer.iter)
        rebuild = time.perf_counter() - start
    return timer.seconds, per_batch, rebuild, period


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--burn-in", type=int, default=30, help="labelled-only iterations")
    parser.add_argument("--iters", type=int, default=30, help="post-burn-in iterations")
    parser.add_argument("--skip", type=int, default=3, help="first iterations of a phase left out")
    parser.add_argument("--gate-rounds", type=int, default=10, help="batches timed for the gate")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE overrides")
    args = parser.parse_args(argv)
    if min(args.burn_in, args.iters) <= args.skip or args.gate_rounds < 1:
        parser.error("--burn-in and --iters must each exceed --skip; --gate-rounds must be >= 1")
    labelled, post, gated, rebuilds = [], {}, {}, {}
    for gate in GATES:
        with tempfile.TemporaryDirectory() as output_dir:
            seconds, gated[gate], rebuilds[gate], period = timed_run(args, gate, output_dir)
        swap = args.burn_in
        labelled += [s for it, s in seconds.items() if args.skip <= it < swap]
        post[gate] = statistics.median(s for it, s in seconds.items() if it >= swap + args.skip)
    base = statistics.median(labelled)
    header = ("iteration", "s/iteration", "x labelled-only", "gate s/iteration", "gate share")
    print("\n%-26s %12s %16s %17s %11s" % header)
    print("%-26s %12.4f %16.2f" % ("labelled only (burn-in)", base, 1.0))
    for gate in GATES:
        row = "%-26s %12.4f %16.2f" % ("mean teacher, gate " + gate, post[gate], post[gate] / base)
        if gate != "none":
            row += " %17.4f %10.1f%%" % (gated[gate], 100 * gated[gate] / post[gate])
        print(row)
    for gate in GATES[1:]:
        per_iter = rebuilds[gate] / period if period else 0.0
        print(
            "reference rebuild (%s gate): %.2f s every REFERENCE_PERIOD=%d iterations: +%.4f s per "
            "iteration (%.1f%% of a gated one)"
            % (gate, rebuilds[gate], period, per_iter, 100 * per_iter / post[gate])
        )


if __name__ == "__main__":
    main()
