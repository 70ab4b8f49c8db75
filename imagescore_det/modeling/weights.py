"""torchvision's ImageNet VGG16 weights as a Detectron2 checkpoint for the VGG16 detector.

The result is written the way Detectron2 ships torchvision ResNets (tools/convert-torchvision-to-d2.py):
a pickle of numpy arrays with ``matching_heuristics``, so ``DetectionCheckpointer`` matches names by
suffix (``conv1_1.weight`` fits ``backbone.conv1_1.weight`` and ``backbone.body.conv1_1.weight``).
torchvision's VGG expects RGB in [0, 1] normalised by ImageNet mean/std: configs that load these
weights set INPUT.FORMAT "RGB", PIXEL_MEAN [123.675, 116.28, 103.53], PIXEL_STD [58.395, 57.12, 57.375].
"""

import pickle
from typing import Dict, List, Mapping, Tuple

import numpy as np
import torch

from imagescore_det.utils.io import atomic_write

from .vgg import VGG16_STAGES, vgg16_conv_names

__all__ = ["vgg16_key_map", "convert_vgg16_state_dict", "convert_vgg16_file"]

#: fc6 and fc7 of torchvision's classifier; classifier.6 (the 1000 ImageNet logits) has no counterpart.
_FC_KEYS = {"classifier.0": "box_head.fc1", "classifier.3": "box_head.fc2"}
_FC_SHAPES = {"box_head.fc1": (4096, VGG16_STAGES[-1][0] * 7 * 7), "box_head.fc2": (4096, 4096)}


def vgg16_key_map() -> Dict[str, Tuple[str, tuple]]:
    """``{torchvision key: (Detectron2 key, expected shape)}`` for every tensor the detector uses.

    In ``torchvision.models.vgg16().features`` each conv is followed by a ReLU (2 entries) and each
    stage by a max-pool (1 entry), which puts the 13 convs at indices 0, 2, 5, 7, 10, ..., 28.
    """
    key_map, index, in_channels = {}, 0, 3
    names = iter(vgg16_conv_names())
    for width, size in VGG16_STAGES:
        for _ in range(size):
            name = next(names)
            key_map["features.%d.weight" % index] = (name + ".weight", (width, in_channels, 3, 3))
            key_map["features.%d.bias" % index] = (name + ".bias", (width,))
            index, in_channels = index + 2, width
        index += 1
    for tv_name, d2_name in _FC_KEYS.items():
        key_map[tv_name + ".weight"] = (d2_name + ".weight", _FC_SHAPES[d2_name])
        key_map[tv_name + ".bias"] = (d2_name + ".bias", _FC_SHAPES[d2_name][:1])
    return key_map


def convert_vgg16_state_dict(
    state_dict: Mapping[str, torch.Tensor], source: str = "state dict"
) -> Dict[str, np.ndarray]:
    """Rename a torchvision VGG16 state dict to this backbone and box head, as numpy arrays.

    Raises ValueError naming ``source`` when a tensor is missing or has the wrong shape
    (e.g. for VGG16-BN or another depth).
    """
    key_map = vgg16_key_map()
    missing = [k for k in key_map if k not in state_dict]
    if missing:
        raise ValueError(
            "%s is not a torchvision VGG16 state dict: %d expected tensors are missing (%s%s)"
            % (source, len(missing), ", ".join(missing[:5]), ", ..." if len(missing) > 5 else "")
        )
    converted = {}
    for tv_key, (d2_key, shape) in key_map.items():
        tensor = state_dict[tv_key]
        if tuple(tensor.shape) != shape:
            raise ValueError(
                "%s: %s has shape %s, VGG16 needs %s" % (source, tv_key, tuple(tensor.shape), shape)
            )
        converted[d2_key] = tensor.detach().cpu().numpy()
    return converted


def convert_vgg16_file(src: str, dst: str) -> List[str]:
    """Convert torchvision's ``vgg16-*.pth`` at ``src`` to a Detectron2 ``.pkl`` at ``dst`` (atomically).

    Returns the torchvision keys left out (the ImageNet classifier, classifier.6).
    """
    if not dst.endswith(".pkl"):
        raise ValueError(
            "%s: the output must end in .pkl, which DetectionCheckpointer reads as a converted model"
            % dst
        )
    state_dict = torch.load(src, map_location="cpu", weights_only=True)
    if not isinstance(state_dict, Mapping):
        raise ValueError("%s holds a %s, not a state dict" % (src, type(state_dict).__name__))
    model = convert_vgg16_state_dict(state_dict, source=src)
    checkpoint = {"model": model, "__author__": "torchvision", "matching_heuristics": True}
    with atomic_write(dst, "wb") as f:
        pickle.dump(checkpoint, f, protocol=pickle.HIGHEST_PROTOCOL)
    return sorted(set(state_dict) - set(vgg16_key_map()))
