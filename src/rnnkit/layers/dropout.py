"""Dropout with a cheaper random mask on CPU.

torch's CPU dropout draws one 32-bit number per element through a scalar Mersenne
twister: on a 2-core Xeon 28 ms for a (64, 64, 512) batch, against 9 ms here
(benchmarks/dropout_speed.py). Here each 64-bit draw gives the keep/drop decisions of
four elements, one 16-bit slice each:

    keep = r >= round(p · 65536) − 32768        r: uniform int16
    out  = x · keep / q                         q = 1 − round(p · 65536) / 65536

so p is used to the nearest 1/65536 (0.1 becomes 0.0999756) and the scale 1/q keeps
the output unbiased for that p. The draws come from torch's default generator, so
`torch.manual_seed` makes runs repeatable; only the mask is saved for backward, one
byte per element (as torch's own dropout saves). Other devices use
`torch.nn.functional.dropout`, which is fast there.
"""
from __future__ import annotations

import torch
from torch import nn

_LEVELS = 1 << 16  # the mask compares 16-bit slices of the random words


class _MaskedScale(torch.autograd.Function):
    """out = x · keep · scale, saving only the boolean mask."""

    @staticmethod
    def forward(ctx, x, keep, scale: float):
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return torch.mul(x, keep).mul_(scale)

    @staticmethod
    def backward(ctx, grad):
        (keep,) = ctx.saved_tensors
        return torch.mul(grad, keep).mul_(ctx.scale), None, None


def keep_mask(shape, p: float) -> tuple[torch.Tensor, float]:
    """A CPU boolean mask of `shape`, True with probability 1 − p (p to 1/65536), and the
    scale 1/(1 − p_used) that keeps x · mask · scale unbiased."""
    numel = 1
    for size in shape:
        numel *= size
    dropped = round(p * _LEVELS)
    words = torch.empty((numel + 3) // 4, dtype=torch.int64).random_(-2 ** 63, None)
    slices = words.view(torch.int16)[:numel].view(shape)  # uniform over int16
    return slices >= dropped - _LEVELS // 2, _LEVELS / (_LEVELS - dropped)


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Inverted dropout of x (any shape): each element zeroed with probability p, the
    rest scaled by 1/(1 − p); x itself when not training or p = 0."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must lie in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0 or x.device.type != "cpu" or round(p * _LEVELS) == 0:
        return nn.functional.dropout(x, p, training=True)
    keep, scale = keep_mask(x.shape, p)
    return _MaskedScale.apply(x, keep, scale)


class Dropout(nn.Dropout):
    """`torch.nn.Dropout` with the cheaper CPU mask of `rnnkit.layers.dropout`."""

    def __init__(self, p: float = 0.5):
        super().__init__(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)
