"""Flushing subnormal floats to zero while the recurrence runs on a CPU.

Over a long sequence the gradient that flows back through a recurrent layer shrinks
step by step, and in a trained layer it often shrinks slowly: for hundreds of steps
its values sit in float32's subnormal range (below 1.2e-38), where an x86 core takes a
slow microcode path for every multiply that reads or writes one. Measured here on the
adding problem at T = 1000 (peephole LSTM, hidden 64, batch 32, one thread), an update
took 1.3-1.5 s with subnormals and 0.10-0.17 s with them flushed, from the first
hundred updates on; the weight-gradient products and the backward loop both slow down.

`flush_denormals()` turns on flush-to-zero and denormals-are-zero (torch's
`set_flush_denormal`) for the calling thread and restores the previous setting on exit;
the extension's worker threads take the caller's setting. Values below 1.2e-38 (float32)
or 2.2e-308 (float64) then read and come out as 0, which changes no figure a model
reports. The Trainer and the extension's autograd Function run inside it.
"""
from __future__ import annotations

import contextlib

import torch

_TINY, _ONE = 5e-324, 1.0  # the smallest subnormal double; multiplied at run time, not folded


def flushing() -> bool:
    """Whether this thread flushes subnormals now (with DAZ a subnormal operand reads as 0)."""
    return _TINY * _ONE == 0.0


@contextlib.contextmanager
def flush_denormals(on: bool = True):
    """Flush subnormals to zero on this thread (on=False: keep them) inside the block."""
    before = flushing()
    if before == on or not torch.set_flush_denormal(on):  # already so, or no such mode on this CPU
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(before)
