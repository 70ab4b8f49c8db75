#!/usr/bin/env python
"""Train Faster R-CNN, swap in image-score pseudo labels at IMAGESCORE.SWAP_ITER, train on, evaluate.

Detectron2's train_net shape: ``setup`` (imagescore_det.engine.setup) builds the config, ``main``
builds the trainer, ``launch`` runs it on ``--num-gpus`` processes. The synthetic demo data is generated first if a config names it
and it is missing (sizes and seed: IMAGESCORE.SYNTHETIC). Example (the demo, CPU)::

    python tools/train_net.py --config-file configs/demo_ssl.yaml
    python tools/train_net.py --config-file configs/demo_ssl.yaml --resume        # continue a run
    python tools/train_net.py --config-file configs/demo_ssl.yaml --eval-only MODEL.WEIGHTS output/demo_ssl/model_final.pth
"""

from imagescore_det.utils.detectron2_import import require_detectron2_or_help

require_detectron2_or_help(__doc__)

from detectron2.engine import default_argument_parser
from detectron2.utils import comm

from imagescore_det.engine import ImageScoreTrainer, launch_main, setup


def main(args):
    cfg = setup(args, training=True)
    if args.eval_only:
        return ImageScoreTrainer.test_checkpoint(cfg, cfg.MODEL.WEIGHTS, resume=args.resume)
    trainer = ImageScoreTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    results = trainer.train()
    if comm.is_main_process():
        trainer.log_summary()
    return results


def invoke_main() -> None:
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch_main(main, args)


if __name__ == "__main__":
    invoke_main()
