"""The one setup every tool runs, as Detectron2's ``default_setup`` is for its train_net."""

from imagescore_det.utils.detectron2_import import require_detectron2

require_detectron2()

from detectron2.engine import default_setup, launch  # noqa: E402
from detectron2.utils import comm  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402

from ..config import build_config  # noqa: E402
from ..data.registry import register_config_datasets  # noqa: E402
from ..data.voc import prepare_synthetic_data  # noqa: E402
from .config_check import check_imagescore_config  # noqa: E402

__all__ = ["setup", "launch_main"]


def setup(args, *, training: bool = False):
    """Config from Detectron2's defaults + IMAGESCORE keys + ``args.config_file`` + ``args.opts``,
    every IMAGESCORE value checked (:func:`.config_check.check_imagescore_config`); loggers; the datasets of IMAGESCORE.REGISTER_DATASETS registered and checked; the synthetic set
    the config names generated if missing.

    ``training`` also runs Detectron2's ``default_setup`` (OUTPUT_DIR, its log file, the config
    dump, the seed), which only a tool that trains into OUTPUT_DIR wants.
    """
    cfg = build_config(args.config_file, args.opts)
    check_imagescore_config(cfg, training=training)
    rank = comm.get_rank()
    if training:
        default_setup(cfg, args)
    else:
        setup_logger(name="detectron2", distributed_rank=rank)
    setup_logger(
        output=cfg.OUTPUT_DIR if training else None, distributed_rank=rank, name="imagescore_det"
    )
    register_config_datasets(cfg)
    prepare_synthetic_data(cfg)
    return cfg


def launch_main(main, args) -> None:
    """``main(args)`` on ``args.num_gpus`` processes per machine (Detectron2's ``launch``, with the
    launch flags of ``default_argument_parser``), as every tool's entry point."""
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
