"""Fast recurrence loops for `Recurrent`: a custom autograd Function whose forward loop
saves the gate activations and whose hand-written backward loop does only the
recurrent product and the elementwise derivatives per step, with all weight gradients
as single products after the loop. The loops run in C++ (csrc/recurrence.cpp, built
on first use) or, where that extension is not available, in plain torch operations.

    RNNKIT_KERNEL=loop      Recurrent runs its reference Python loop (no kernels at all)
    RNNKIT_NO_EXTENSION=1   the kernels run their Python loops (the C++ extension is not built)

Which path each cell takes: every built-in cell (rnn, irnn, additive, lstm in all ten
variants, gru in both) with any skip and lengths runs these kernels on the loop path;
cells registered by users (`describe` returns None) run Recurrent's own loop. On CPU
with the extension, GRU and Elman configurations equal to torch.nn.GRU / RNN run
here too (torch has no fused CPU kernel for them), and so does torch.nn.LSTM's in
training (`replaces_fused`); its inference keeps oneDNN's kernel.
"""
from __future__ import annotations

import os

import torch

from . import extension, python_loop
from .function import Recurrence, run_direction
from .spec import KernelSpec, describe


def enabled() -> bool:
    """False when RNNKIT_KERNEL=loop asks for the reference loop."""
    return os.environ.get("RNNKIT_KERNEL", "").lower() != "loop"


# torch kernels that rnnkit's own loops beat on CPU (benchmarks/speed.py): torch.gru and
# torch.rnn_* have no fused CPU kernel, so GRU and Elman cells always run these loops.
# torch.lstm runs oneDNN's, which these loops beat in float32 training (1.15-1.4x,
# benchmarks/speed.py) and by far on ragged batches, where oneDNN takes no packed input
# and torch.lstm runs a chain of small operations per step (benchmarks/ragged_speed.py).
# It keeps torch's kernel for inference, and under CPU autocast on full-length batches
# (oneDNN's bfloat16 kernel, with AMX many times faster than any float32 loop).
_REPLACED = ("gru", "rnn_tanh", "rnn_relu")


def replaces_fused(cell, x, lengths=None, grad: bool = False) -> bool:
    """True where `Recurrent` should run its loop path (these kernels) rather than torch's
    kernel for a torch-equivalent configuration, on CPU in float32 or float64 with the
    C++ extension available: a GRU or Elman cell always; an LSTM when a backward will
    follow (`grad`), unless CPU autocast is on and the batch is full-length (`lengths`
    None)."""
    if not (enabled() and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)):
        return False
    if cell.torch_kind in _REPLACED:
        return extension.available()
    return (cell.torch_kind == "lstm" and grad and (lengths is not None or not _cpu_autocast())
            and extension.available())


def _cpu_autocast() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4 takes no device type
        return torch.is_autocast_cpu_enabled()


__all__ = ["Recurrence", "run_direction", "describe", "KernelSpec", "enabled", "replaces_fused",
           "extension", "python_loop"]
