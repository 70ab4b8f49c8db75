"""Checkpoints that a detector scores with or resumes from must fit it, parameter for parameter.

Detectron2's checkpointer loads what fits and only warns about the rest, which is right when a
detector starts from ImageNet weights (its heads are new on purpose) and wrong when a trained
detector scores or resumes: a box predictor or a recorded layer left at its random initialisation
gives scores and pseudo labels that mean nothing, with exit code 0. :func:`check_checkpoint_fits`
refuses such a file before it is used, naming it and the first parameter that does not fit.
"""

from typing import Mapping

import torch

__all__ = ["read_checkpoint_weights", "check_checkpoint_fits"]


def read_checkpoint_weights(path: str) -> Mapping[str, torch.Tensor]:
    """The model weights of a Detectron2 ``.pth`` checkpoint (``{"model": state_dict, ...}`` or a bare
    state dict); a ValueError naming ``path`` for a file that is neither."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # unpickling errors have many types; all mean "not a checkpoint"
        raise ValueError(
            "%s is not a PyTorch checkpoint (%s: %s)" % (path, type(error).__name__, error)
        ) from error
    weights = loaded.get("model", loaded) if isinstance(loaded, dict) else None
    if (
        not isinstance(weights, dict)
        or not weights
        or not all(torch.is_tensor(v) for v in weights.values())
    ):
        keys = sorted(loaded)[:5] if isinstance(loaded, dict) else type(loaded).__name__
        raise ValueError(
            "%s is not a detector checkpoint: it holds %s, not model weights" % (path, keys)
        )
    return weights


def check_checkpoint_fits(model: torch.nn.Module, path: str) -> None:
    """Refuse ``path`` unless it has every parameter and buffer of ``model``, each of the same shape.

    Only ``.pth`` files are checked; a ``.pkl`` (Detectron2's model-zoo format, with its own name
    matching) is for initialisation and loads as Detectron2 loads it.
    """
    if path.endswith(".pkl"):
        return
    weights = read_checkpoint_weights(path)
    for name, tensor in model.state_dict().items():
        if name not in weights:
            raise ValueError("%s does not fit the model: it has no parameter %r" % (path, name))
        if tuple(weights[name].shape) != tuple(tensor.shape):
            raise ValueError(
                "%s does not fit the model: parameter %r has shape %s in the checkpoint but %s in the model "
                "(a different MODEL.ROI_HEADS.NUM_CLASSES, backbone or width?)"
                % (path, name, tuple(weights[name].shape), tuple(tensor.shape))
            )
