"""Weight averaging: an exponential moving average of the weights over training steps.

    θ̄ ← d_k θ̄ + (1 − d_k) θ         after every optimiser step k after `start`
    d_k = min(decay, (1 + k) / (10 + k))

The warm-up of d_k (as in TensorFlow's ExponentialMovingAverage with num_updates) keeps
the first steps' weights from dominating the average. The average is what the trainer
evaluates and what checkpoints hold as the model's weights, so `eval`, `sample`,
`predict` and `export` use it with no option of their own; the weights the optimiser
moves are kept beside it for an exact resume.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


class WeightAverage:
    """The moving average of `model`'s floating-point parameters and buffers.

    Args:
        model: the module being trained (its state dict's tensors are read and, inside
            `swapped`, written in place).
        decay: d in [0, 1); larger averages over more steps (about 1 / (1 − d)).
        start: optimiser steps before the average starts; until then it equals the weights.
    """

    def __init__(self, model: nn.Module, decay: float, start: int = 0):
        if not 0 <= decay < 1:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.model, self.decay, self.start = model, decay, start
        self.shadow = {name: t.detach().clone() for name, t in self._tensors().items()}

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {name: t for name, t in self.model.state_dict().items() if t.is_floating_point()}

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold in the weights after optimiser step `step` (1 for the first)."""
        k = step - self.start
        d = 0.0 if k <= 0 else min(self.decay, (1 + k) / (10 + k))
        for name, t in self._tensors().items():
            self.shadow[name].lerp_(t.detach(), 1.0 - d)

    @contextmanager
    def swapped(self) -> Iterator[dict[str, torch.Tensor]]:
        """Within the block the model holds the average; yields a copy of the trained weights,
        which are put back on leaving."""
        tensors = self._tensors()
        trained = {name: t.detach().clone() for name, t in tensors.items()}
        with torch.no_grad():
            for name, t in tensors.items():
                t.copy_(self.shadow[name])
        try:
            yield trained
        finally:
            with torch.no_grad():
                for name, t in tensors.items():
                    t.copy_(trained[name])

    @torch.no_grad()
    def restore(self, average: dict[str, torch.Tensor]) -> None:
        """Take `average` (name → tensor, e.g. a checkpoint's model weights) as the average."""
        for name, t in self.shadow.items():
            t.copy_(average[name])
