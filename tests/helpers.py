"""Plain helpers shared by the test modules (fixtures live in conftest.py).

Nothing here imports Detectron2 at module level, so a test module that needs none of it can import
this file where Detectron2 is missing; the functions that build Detectron2 configs import it when called.
"""

import functools
import importlib.util
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(REPO, "tools")
CONFIGS = os.path.join(REPO, "configs")
DEMO_CONFIG = os.path.join(CONFIGS, "demo_ssl.yaml")

#: The tiny synthetic VOC set every training test reads (IMAGESCORE.SYNTHETIC sizes and seed).
TINY_DATA = {"num_labelled": 6, "num_unlabelled": 10, "num_test": 4, "seed": 0}
#: The one tiny training setup: the demo config made cheaper. A threshold of 0 makes even an
#: 8-iteration model pseudo-label something. The iterations come from :func:`schedule`.
TINY_OPTS = [
    "IMAGESCORE.VGG.WIDTH_DIVISOR", "8", "MODEL.ROI_BOX_HEAD.FC_DIM", "32",
    "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MIN_SIZE_TEST", "128", "SOLVER.IMS_PER_BATCH", "2",
    "IMAGESCORE.PSEUDO_SCORE_THRESH", "0.0", "TEST.DETECTIONS_PER_IMAGE", "5",
    "SOLVER.WARMUP_ITERS", "2", "SOLVER.CHECKPOINT_PERIOD", "100",
    "IMAGESCORE.SYNTHETIC.NUM_LABELLED", str(TINY_DATA["num_labelled"]),
    "IMAGESCORE.SYNTHETIC.NUM_UNLABELLED", str(TINY_DATA["num_unlabelled"]),
    "IMAGESCORE.SYNTHETIC.NUM_TEST", str(TINY_DATA["num_test"]), "IMAGESCORE.SYNTHETIC.SEED", str(TINY_DATA["seed"]),
]  # fmt: skip


def schedule(max_iter, swap_iter=4, eval_period=0):
    """The tiny schedule's iteration counts: KEY VALUE opts to put after :data:`TINY_OPTS`."""
    return [
        "SOLVER.MAX_ITER",
        str(max_iter),
        "IMAGESCORE.SWAP_ITER",
        str(swap_iter),
        "TEST.EVAL_PERIOD",
        str(eval_period),
    ]


@functools.lru_cache(maxsize=None)
def load_tool(name):
    """Import tools/<name>.py as module ``name`` (once); registered in sys.modules so that launch() can pickle its main."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(TOOLS, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def train_args(output_dir, max_iter, *extra, swap_iter=4):
    """tools/train_net.py's arguments: the demo config on the tiny schedule, ``extra`` flags and opts last."""
    from detectron2.engine import default_argument_parser

    opts = TINY_OPTS + schedule(max_iter, swap_iter) + ["OUTPUT_DIR", str(output_dir)]
    flags = [item for item in extra if item.startswith("--")]
    overrides = [item for item in extra if not item.startswith("--")]
    return default_argument_parser().parse_args(
        ["--config-file", DEMO_CONFIG, *flags, *opts, *overrides]
    )


def project_cfg(filename, *overrides):
    """A config from this repository's configs/, on CPU, with ``KEY, value`` overrides."""
    from detectron2.config import get_cfg

    from imagescore_det.config import add_imagescore_config

    cfg = get_cfg()
    add_imagescore_config(cfg)
    cfg.merge_from_file(os.path.join(CONFIGS, filename))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", *overrides])
    return cfg


def detectron2_voc_cfg(filename):
    """Detectron2's own PascalVOC config with its backbone moved inside the recording wrapper."""
    import detectron2
    from detectron2.config import get_cfg

    from imagescore_det.config import add_imagescore_config

    cfg = get_cfg()
    add_imagescore_config(cfg)
    cfg.merge_from_file(
        os.path.join(
            os.path.dirname(detectron2.__file__),
            "model_zoo",
            "configs",
            "PascalVOC-Detection",
            filename,
        )
    )
    cfg.IMAGESCORE.WRAPPED_BACKBONE = cfg.MODEL.BACKBONE.NAME
    cfg.MODEL.BACKBONE.NAME = "build_imagescore_backbone"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def slim_vgg_cfg(*overrides):
    return project_cfg(
        "Base-VGG16.yaml",
        "IMAGESCORE.VGG.WIDTH_DIVISOR",
        8,
        "MODEL.ROI_BOX_HEAD.FC_DIM",
        32,
        *overrides,
    )


def spawn_with_this_process_threads(monkeypatch):
    """Processes spawned from here (Detectron2's ``launch``) use this process's torch thread count:
    float32 results can differ in the last bit between thread counts, and the multi-process tests
    compare outputs bit for bit with a one-process run."""
    import torch

    threads = str(torch.get_num_threads())
    monkeypatch.setenv("OMP_NUM_THREADS", threads)
    monkeypatch.setenv("MKL_NUM_THREADS", threads)
