#!/usr/bin/env python
"""Train Faster R-CNN, swap in image-score pseudo labels at IMAGESCORE.SWAP_ITER, train on, evaluate.

Detectron2's train_net shape: ``setup`` (imagescore_det.engine.setup) builds the config, ``main``
builds the trainer, ``launch`` runs it on ``--num-gpus`` processes. The synthetic demo data is generated first if a config names it
and it is missing (sizes and seed: IMAGESCORE.SYNTHETIC). Example (the demo, CPU)::

    python tools/train_net.py --config-file configs/demo_ssl.yaml
    python tools/train_net.py --config-file configs/demo_ssl.yaml --resume        # continue a run
    python tools/train_net.py --config-file configs/demo_ssl.yaml --eval-only MODEL.WEIGHTS output/demo_ssl/model_final.pth
"""
import logging

from imagescore_det.utils.detectron2_import import require_detectron2_or_help

require_detectron2_or_help(__doc__)

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import default_argument_parser, launch
from detectron2.evaluation.testing import flatten_results_dict
from detectron2.utils import comm

from imagescore_det.detection.selection import output_paths
from imagescore_det.engine import ImageScoreTrainer, setup
from imagescore_det.evaluation.evaluators import COCO_STYLE_KEY, protocol_of

logger = logging.getLogger("imagescore_det")


def ap50(flat_results, key="bbox"):
    """``<key>/AP50`` from flattened evaluation results (the first test set's, if there are several), or None."""
    value = next((value for name, value in flat_results.items() if name.endswith(key + "/AP50")), None)
    return value[0] if isinstance(value, tuple) else value  # EventStorage.latest() holds (value, iteration)


def ap50_text(cfg, flat_results):
    """'47.35 (Pascal VOC protocol; COCO-style by pycocotools: 44.10)': the protocol named beside each number."""
    text = "%.2f (%s" % (ap50(flat_results), protocol_of(cfg.DATASETS.TEST[0]))
    coco_style = ap50(flat_results, COCO_STYLE_KEY)
    return text + ("; COCO-style by pycocotools: %.2f)" % coco_style if coco_style is not None else ")")


def report(cfg, trainer) -> None:
    """Log AP50 before the first swap and at the end, and where the files went."""
    hook = trainer.swap_hook
    test_sets = ", ".join(cfg.DATASETS.TEST)
    for done, results in list(hook.evaluations.items() if hook else [])[:1]:
        logger.info("AP50 on %s before the swap (iteration %d): %s", test_sets, done, ap50_text(cfg, flatten_results_dict(results)))
    if ap50(trainer.storage.latest()) is not None:
        logger.info("AP50 on %s at the end (iteration %d): %s", test_sets, trainer.max_iter, ap50_text(cfg, trainer.storage.latest()))
    if hook and hook.swap_iter >= 0:
        files = output_paths(cfg)
        logger.info(
            "Pseudo labels: %s; scores: %s; histogram: %s; reference: %s",
            files["pseudo_labels"], files["scores"], files["histogram"], files["reference"],
        )
    logger.info("Checkpoints, metrics.json and the log are in %s", cfg.OUTPUT_DIR)


def main(args):
    cfg = setup(args, training=True)
    if args.eval_only:
        model = ImageScoreTrainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        return ImageScoreTrainer.test(cfg, model)
    trainer = ImageScoreTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    results = trainer.train()
    if comm.is_main_process():
        report(cfg, trainer)
    return results


def invoke_main() -> None:
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args,))


if __name__ == "__main__":
    invoke_main()
