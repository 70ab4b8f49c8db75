"""Record the activations of named modules, one row per image.

Hooks exist only inside the recorder's ``with`` block, so a model pays nothing for
recording while it trains. Detection batches pad images to a common size; when told
the real image sizes, the recorder crops each activation to the image's own region
before pooling it to ``grid x grid``, so that padding never reaches a score.
"""

import difflib
import functools
import math
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn

__all__ = ["ActivationRecorder", "recordable_layers", "adaptive_average_pool"]


def recordable_layers(model: nn.Module) -> List[str]:
    """Qualified names of ``model``'s modules, in registration order: what ``layers`` accepts."""
    return [name for name, _ in model.named_modules() if name]


@functools.lru_cache(maxsize=256)
def _pooling_matrix(size: int, grid: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[grid, size] averaging weights with adaptive pooling's windows [floor(i*size/grid), ceil((i+1)*size/grid))."""
    matrix = torch.zeros(grid, size, dtype=torch.float64)
    for i in range(grid):
        start, stop = (i * size) // grid, -(-(i + 1) * size // grid)
        matrix[i, start:stop] = 1.0 / (stop - start)
    return matrix.to(dtype=dtype, device=device)


def adaptive_average_pool(activation: torch.Tensor, grid: int) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(activation, grid)`` computed as two small matrix products.

    Adaptive average pooling is separable, so pooling rows and then columns with fixed averaging
    matrices gives the same numbers (to float rounding) about twice as fast on large CPU maps,
    which keeps recording cheap next to the convolutions that produced the map.
    """
    height, width = activation.shape[-2:]
    rows = _pooling_matrix(height, grid, activation.dtype, activation.device)
    columns = _pooling_matrix(width, grid, activation.dtype, activation.device)
    return torch.matmul(torch.matmul(rows, activation), columns.t())


class ActivationRecorder:
    """Forward hooks on named modules that collect per-image activations.

    Args:
        model: any ``nn.Module``.
        layers: qualified module names (see :func:`recordable_layers`); each module's
            output is recorded, so name the module *after* the activation (e.g. the ReLU).
        grid: pool each 4-D activation to ``C x grid x grid``; 0 keeps the native size,
            which needs inputs of one size.
        input_module: name of the module whose first tensor input is the (padded) image
            batch; defaults to ``model`` itself. For a Detectron2 model name its backbone,
            since the model itself is called with a list of dicts.

    Example::

        rec = ActivationRecorder(model, layers=["features.1", "features.3"], grid=0)
        with rec:
            model(images)
        acts = rec.pop()   # {"features.1": tensor [N, 64, H, W], ...}
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str],
        *,
        grid: int = 0,
        input_module: Optional[str] = None,
    ):
        if isinstance(layers, str) or not layers:
            raise ValueError("layers must be a non-empty list of module names, got %r" % (layers,))
        if int(grid) != grid or grid < 0:
            raise ValueError(
                "grid must be an integer >= 0 (0 keeps the native size), got %r" % (grid,)
            )
        modules = dict(model.named_modules())
        for name in list(layers) + ([input_module] if input_module else []):
            if name not in modules or not name:
                close = difflib.get_close_matches(name, recordable_layers(model), n=5, cutoff=0.5)
                hint = "; close matches: %s" % ", ".join(close) if close else ""
                raise ValueError(
                    "%s has no module named %r%s (recordable_layers(model) lists them all)"
                    % (type(model).__name__, name, hint)
                )
        if len(set(layers)) != len(layers):
            raise ValueError("layers lists a module twice: %r" % (list(layers),))
        self.layers = list(layers)
        self.grid = int(grid)
        self._modules = {name: modules[name] for name in self.layers}
        self._input_module = modules[input_module] if input_module else model
        self._handles: list = []
        self._chunks: Dict[str, List[torch.Tensor]] = {name: [] for name in self.layers}
        self._image_sizes: Optional[List[Tuple[int, int]]] = None
        self._input_size: Optional[Tuple[int, int]] = None

    def set_image_sizes(self, image_sizes: Optional[Iterable[Tuple[int, int]]]) -> None:
        """Give the (height, width) of each real image inside the next padded batch.

        ``None`` (the default) treats the whole input as image. Padding is assumed at the
        bottom and right, as Detectron2's ``ImageList`` does.
        """
        self._image_sizes = (
            None if image_sizes is None else [(int(h), int(w)) for h, w in image_sizes]
        )

    def __enter__(self) -> "ActivationRecorder":
        if self._handles:
            raise RuntimeError("ActivationRecorder is already recording; blocks do not nest")
        self._handles.append(
            self._input_module.register_forward_pre_hook(self._remember_input_size)
        )
        for name, module in self._modules.items():
            self._handles.append(module.register_forward_hook(self._make_hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def pop(self) -> Dict[str, torch.Tensor]:
        """Return ``{layer: float tensor [N, ...]}`` recorded since the last pop, and forget it."""
        missing = [name for name in self.layers if not self._chunks[name]]
        if missing:
            raise ValueError(
                "layer %r produced no output: was the model called inside the with block?"
                % missing[0]
            )
        acts = {
            name: torch.cat(chunks) if len(chunks) > 1 else chunks[0]
            for name, chunks in self._chunks.items()
        }
        self._chunks = {name: [] for name in self.layers}
        counts = {name: len(a) for name, a in acts.items()}
        if len(set(counts.values())) != 1:
            raise ValueError(
                "layers recorded different numbers of images (a module ran twice per forward?): %s"
                % counts
            )
        return acts

    def _remember_input_size(self, module, args) -> None:
        batch = next((a for a in args if torch.is_tensor(a)), None)
        self._input_size = None if batch is None or batch.dim() < 3 else tuple(batch.shape[-2:])

    def _make_hook(self, name: str):
        def hook(module, inputs, output):
            if not torch.is_tensor(output):
                raise ValueError(
                    "layer %r returns %s, not a tensor: record a module that returns one"
                    % (name, type(output).__name__)
                )
            self._chunks[name].append(self._per_image(name, output.detach()))

        return hook

    def _per_image(self, name: str, output: torch.Tensor) -> torch.Tensor:
        """Crop away batch padding and pool to the grid; copy so later in-place ops cannot alter it.

        Float64 stays float64 (exactness checks run there); every other dtype is recorded as float32.
        """
        output = output if output.dtype == torch.float64 else output.float()
        if output.dim() != 4:
            return output.clone()
        regions = self._valid_regions(name, output)
        if regions is None:
            return adaptive_average_pool(output, self.grid) if self.grid else output.clone()
        crops = [output[i : i + 1, :, :h, :w] for i, (h, w) in enumerate(regions)]
        if self.grid:
            return torch.cat([adaptive_average_pool(crop, self.grid) for crop in crops])
        if len(set(regions)) != 1:
            raise ValueError(
                "grid=0 keeps native sizes and needs images of one size, but layer %r holds images of "
                "sizes %s; set a grid > 0" % (name, sorted(set(regions)))
            )
        return torch.cat(crops)

    def _valid_regions(self, name: str, output: torch.Tensor) -> Optional[List[Tuple[int, int]]]:
        """Each image's region in ``output``, or None when no image is padded."""
        if self._image_sizes is None:
            return None
        if len(self._image_sizes) != len(output):
            raise ValueError(
                "set_image_sizes gave %d sizes but layer %r saw a batch of %d images"
                % (len(self._image_sizes), name, len(output))
            )
        if self._input_size is None:
            raise ValueError(
                "the input module received no image tensor, so padding cannot be located"
            )
        in_h, in_w = self._input_size
        out_h, out_w = output.shape[-2:]
        # The layer's stride is in_h / out_h; ceil keeps every row that sees the image.
        regions = [
            (
                min(out_h, max(1, math.ceil(h * out_h / in_h))),
                min(out_w, max(1, math.ceil(w * out_w / in_w))),
            )
            for h, w in self._image_sizes
        ]
        if all(region == (out_h, out_w) for region in regions):
            return None
        return regions
