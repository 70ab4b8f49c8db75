"""Orchestration: one seed's labelled-only phase, then each selection mode continued from it.

Per seed the model is trained on the labelled images for ``SOLVER.EPOCHS_LABELLED`` epochs once;
every *variant* restores that state and trains ``SOLVER.EPOCHS_ADDITIONAL`` more epochs, re-selecting
the additional images before each epoch (docs/method.md §3). Variants: "baseline" (no additional images),
"softmax", "imagescore", and for model assembly "boost<k>" (image-score selection for class k only)
followed by "assemble". Each variant's test and training predictions go to
``<output>/runs/seed<s>/<variant>.npz`` (written atomically), which the reports read.
"""

import logging
import os
from typing import Dict, List, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..utils.io import atomic_write
from .assembly import assemble_predictions
from .data import ClassificationSplit, load_split
from .inference import Predictions, build_class_references, predict_and_score
from .models import build_model, recorded_layers
from .selection import boost_alphas, select_additional
from .training import TrainingState, derived_seed, seed_everything, train_epoch

__all__ = [
    "MODES",
    "variants_for",
    "model_from_cfg",
    "run_seed",
    "run_experiment",
    "resolve_device",
]

logger = logging.getLogger(__name__)

#: What ``tools/train_classifier.py --mode`` accepts.
MODES = ("baseline", "softmax", "imagescore", "assemble")


def variants_for(modes: Sequence[str], num_classes: int) -> List[str]:
    """The variants to train, in order, without repeats; assembly needs the baseline and every boost."""
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError("mode must be one of %s, got %r" % (MODES, unknown[0]))
    variants: List[str] = []
    for mode in modes:
        wanted = [mode]
        if mode == "assemble":
            wanted = ["baseline"] + ["boost%d" % k for k in range(num_classes)] + ["assemble"]
        variants += [v for v in wanted if v not in variants]
    return variants


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _selection_of(variant: str, alphas: Sequence[float]):
    if variant == "baseline":
        return "none", list(alphas)
    if variant.startswith("boost"):
        return "imagescore", boost_alphas(alphas, int(variant[len("boost") :]))
    return variant, list(alphas)


def model_from_cfg(cfg, split: ClassificationSplit) -> torch.nn.Module:
    """``cfg.MODEL``'s network for the split's image shape and classes, initialised from torch's RNG."""
    shape = split.labelled.images.shape
    return build_model(
        cfg.MODEL.NAME,
        split.num_classes,
        shape[1],
        width=cfg.MODEL.WIDTH,
        stem_stride=cfg.MODEL.STEM_STRIDE,
        input_size=shape[-1],
    )


def _predict_parts(
    model, layers, split: ClassificationSplit, parts: Sequence[str], cfg, device, classes=None
) -> Dict[str, Predictions]:
    """References of ``classes`` (default all) from the labelled images with the model as it is now,
    then each part's predictions, scored where the predicted class has a reference."""
    options = dict(batch_size=cfg.TEST.BATCH_SIZE, device=device)
    references = (
        {}
        if classes is not None and not len(classes)
        else build_class_references(
            model,
            layers,
            split.labelled,
            split.num_classes,
            classes=classes,
            threshold_ratio=cfg.IMAGESCORE.THRESHOLD_RATIO,
            threshold_stat=cfg.IMAGESCORE.THRESHOLD_STAT,
            **options,
        )
    )
    return {
        part: predict_and_score(
            model,
            layers,
            references,
            getattr(split, part),
            formula=cfg.IMAGESCORE.FORMULA,
            **options,
        )
        for part in parts
    }


def _continue_training(
    state, start, variant, split, layers, cfg, seed, device, progress
) -> Dict[str, np.ndarray]:
    """Restore the phase-1 state and train the variant's phase 2, re-selecting before every epoch.

    Selection builds only the references it ranks with (softmax: none; a boosted model: its class);
    a boosted model is evaluated on the test images against its class's reference only, as assembly
    needs no more. The other variants keep every class's scores on test and labelled images.
    """
    mode, alphas = _selection_of(variant, cfg.IMAGESCORE.ALPHAS)
    ranked = [c for c, a in enumerate(alphas) if mode == "imagescore" and a > 0]
    state.restore(start)
    torch.manual_seed(derived_seed(seed, 2))
    generator = torch.Generator().manual_seed(derived_seed(seed, 2))
    labelled, additional = split.labelled, split.additional
    counts, correct = [], []
    epochs = range(cfg.SOLVER.EPOCHS_ADDITIONAL)
    for _ in tqdm(epochs, desc="seed %d %s" % (seed, variant), leave=False, disable=not progress):
        images, labels = [labelled.images], [labelled.labels]
        if mode != "none":
            predictions = _predict_parts(
                state.model, layers, split, ["additional"], cfg, device, ranked
            )["additional"]
            chosen = np.concatenate(
                list(select_additional(mode, predictions, alphas, additional.ids).values())
            )
            images.append(additional.images[chosen])
            labels.append(torch.as_tensor(predictions.labels[chosen]))
            counts.append(len(chosen))
            correct.append(
                int((predictions.labels[chosen] == additional.labels.numpy()[chosen]).sum())
            )
        train_epoch(
            state,
            images,
            labels,
            batch_size=cfg.SOLVER.BATCH_SIZE,
            generator=generator,
            device=device,
        )
    record = {
        "selected_count": np.asarray(counts, dtype=np.int64),
        "selected_correct": np.asarray(correct, dtype=np.int64),
    }
    boosted = variant.startswith("boost")
    parts = ["test"] if boosted else ["test", "labelled"]
    for part, predictions in _predict_parts(
        state.model, layers, split, parts, cfg, device, ranked if boosted else None
    ).items():
        record.update(
            {
                part + "_labels": getattr(split, part).labels.numpy(),
                part + "_pred": predictions.labels,
                part + "_confidence": predictions.confidence,
                part + "_score": predictions.scores,
            }
        )
    return record


def _assemble(results: Dict[str, Dict[str, np.ndarray]], num_classes: int) -> Dict[str, np.ndarray]:
    boosted = [results["boost%d" % k] for k in range(num_classes)]
    predictions = np.stack([b["test_pred"] for b in boosted])
    scores = np.stack([b["test_score"] for b in boosted])
    base = results["baseline"]["test_pred"]
    return {
        "test_labels": results["baseline"]["test_labels"],
        "test_pred": assemble_predictions(predictions, scores, base),
        "base_pred": base,
        "claims": (predictions == np.arange(num_classes)[:, None]).sum(
            axis=0
        ),  # models claiming each image
    }


def _save(path: str, record: Dict[str, np.ndarray]) -> None:
    with atomic_write(path, "wb") as f:
        np.savez(f, **record)


def run_seed(
    cfg,
    split: ClassificationSplit,
    seed: int,
    modes: Sequence[str],
    output_dir: str,
    *,
    device,
    progress=True,
):
    """Train every variant the modes need for one seed; returns ``{variant: record}`` and writes them."""
    variants = variants_for(modes, split.num_classes)
    seed_everything(seed)
    model = model_from_cfg(cfg, split).to(device)
    layers = recorded_layers(model)
    state = TrainingState.create(model, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY)
    generator = torch.Generator().manual_seed(derived_seed(seed, 1))
    for _ in tqdm(
        range(cfg.SOLVER.EPOCHS_LABELLED),
        desc="seed %d labelled" % seed,
        leave=False,
        disable=not progress,
    ):
        train_epoch(
            state,
            [split.labelled.images],
            [split.labelled.labels],
            batch_size=cfg.SOLVER.BATCH_SIZE,
            generator=generator,
            device=device,
        )
    start = state.snapshot()
    results = {}
    for variant in variants:
        if variant == "assemble":
            results[variant] = _assemble(results, split.num_classes)
        else:
            results[variant] = _continue_training(
                state, start, variant, split, layers, cfg, seed, device, progress
            )
        _save(os.path.join(output_dir, "runs", "seed%d" % seed, variant + ".npz"), results[variant])
        accuracy = float((results[variant]["test_pred"] == results[variant]["test_labels"]).mean())
        logger.info("seed %d %s: test accuracy %.4f", seed, variant, accuracy)
    return results


def _check_output_config(cfg, output_dir: str) -> None:
    """Runs of one output folder must share one config (seeds and device aside), or reports would mix them."""
    comparable = cfg.clone()
    comparable.defrost()
    comparable.SEEDS, comparable.DEVICE = (), ""
    text = comparable.dump()
    path = os.path.join(output_dir, "config.yaml")
    if os.path.exists(path):
        with open(path) as f:
            if f.read() != text:
                raise ValueError(
                    "%s holds runs of another config; choose a new output folder" % path
                )
        return
    with atomic_write(path) as f:
        f.write(text)


def run_experiment(
    cfg, modes: Sequence[str], seeds: Sequence[int], output_dir: str, *, progress: bool = True
) -> ClassificationSplit:
    """Load the split once, then run every seed; returns the split (the reports need its class names)."""
    split = load_split(cfg)
    if len(cfg.IMAGESCORE.ALPHAS) != split.num_classes:
        raise ValueError(
            "IMAGESCORE.ALPHAS has %d values but %s has %d classes"
            % (len(cfg.IMAGESCORE.ALPHAS), cfg.DATA.NAME, split.num_classes)
        )
    _check_output_config(cfg, output_dir)
    device = resolve_device(cfg.DEVICE)
    logger.info(
        "%s: %d labelled, %d additional, %d test images; device %s",
        cfg.DATA.NAME,
        len(split.labelled),
        len(split.additional),
        len(split.test),
        device,
    )
    for seed in tqdm(list(seeds), desc="seeds", disable=not progress):
        run_seed(cfg, split, seed, modes, output_dir, device=device, progress=progress)
    return split
