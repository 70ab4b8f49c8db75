"""The training loop: Adam, cross-entropy, seeded shuffling (docs/method.md §3).

Training state (model and optimizer) can be snapshotted after the labelled-only phase, so that
every selection mode of one seed continues from the very same model: differences between modes
then come from the selection alone.
"""

import copy
import random
from dataclasses import dataclass
from typing import Dict, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["derived_seed", "seed_everything", "TrainingState", "train_epoch"]


def derived_seed(*keys: int) -> int:
    """A 31-bit seed from a tuple of integers (e.g. seed, phase); distinct tuples do not collide in practice."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0] & 0x7FFFFFFF)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (initialisation and dropout draw from torch's global RNG)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class TrainingState:
    """A model with its Adam optimizer; ``snapshot``/``restore`` copy both."""

    model: nn.Module
    optimizer: torch.optim.Optimizer

    @classmethod
    def create(cls, model: nn.Module, *, lr: float, weight_decay: float = 0.0) -> "TrainingState":
        return cls(model, torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay))

    def snapshot(self) -> Dict[str, dict]:
        return {
            "model": copy.deepcopy(self.model.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
        }

    def restore(self, snapshot: Dict[str, dict]) -> None:
        self.model.load_state_dict(snapshot["model"])
        self.optimizer.load_state_dict(copy.deepcopy(snapshot["optimizer"]))


def train_epoch(
    state: TrainingState,
    image_parts: Sequence[torch.Tensor],
    label_parts: Sequence[torch.Tensor],
    *,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
) -> float:
    """One pass over the concatenated parts in a shuffled order; returns the mean cross-entropy.

    Parts (e.g. the labelled images and the selected additional images with their predicted
    labels) are concatenated here so that callers need not copy the labelled set every epoch.
    """
    images = torch.cat(list(image_parts)) if len(image_parts) > 1 else image_parts[0]
    labels = torch.cat(list(label_parts)) if len(label_parts) > 1 else label_parts[0]
    if len(images) != len(labels):
        raise ValueError("got %d images but %d labels" % (len(images), len(labels)))
    state.model.train()
    order = torch.randperm(len(images), generator=generator)
    total, seen = 0.0, 0
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        x, y = images[batch].to(device), labels[batch].to(device)
        loss = F.cross_entropy(state.model(x), y)
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        total += loss.item() * len(batch)
        seen += len(batch)
    return total / max(seen, 1)
