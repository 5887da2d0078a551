"""The one place that decides devices and precision; nothing else branches on CPU/GPU."""
from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch


def resolve_device(spec: str = "auto", local_rank: int = 0) -> torch.device:
    """'auto' -> cuda:<local_rank> if CUDA is present, else cpu; or the device named.

    Raises ValueError when the named device is not available here.
    """
    if spec == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"run.device = {spec!r}: CUDA is not available on this machine (use auto or cpu)")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
        if device.index >= torch.cuda.device_count():
            raise ValueError(f"run.device = {spec!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"run.device = {spec!r}: MPS is not available on this machine")
    return device


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast is supported (and worthwhile) on `device`."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu"  # CPU autocast supports bf16 (fast with AVX512-BF16/AMX)


def cpu_has_bf16_matrix_units() -> bool:
    """Whether this CPU has AMX tiles (Intel Sapphire Rapids and later), where oneDNN's
    bf16 kernels train an LSTM about twice as fast as fp32; without them bf16 on a CPU
    is emulated or converted and rarely faster."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # torch's own check (private API)
    try:
        return bool(probe()) if probe is not None else False
    except Exception:  # noqa: BLE001 - an older or different torch: assume none
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """'fp32' | 'bf16' | 'auto' -> 'fp32' or 'bf16' for this device.

    'auto' picks bf16 on a GPU that supports it and on a CPU with bf16 matrix units
    (AMX), fp32 elsewhere. An explicit 'bf16' on a device without it is an error.
    """
    if precision == "fp32":
        return "fp32"
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if bf16_supported(device) else "fp32"
        return "bf16" if device.type == "cpu" and cpu_has_bf16_matrix_units() else "fp32"
    if not bf16_supported(device):
        raise ValueError(f"trainer.precision = 'bf16': not supported on {device} (use fp32 or auto)")
    return "bf16"


def autocast(device: torch.device, precision: str):
    """A context manager: bf16 autocast on `device`, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int, deterministic: bool = True, threads: int = 0,
                    device: torch.device | None = None) -> None:
    """Seed python, numpy and torch (all devices); on CUDA, ask for deterministic kernels.

    On CPU the kernels rnnkit uses are deterministic for a fixed thread count, and
    `torch.use_deterministic_algorithms` makes the oneDNN LSTM ~1000x slower there,
    so it is only set for CUDA (the tests check CPU runs are bit-for-bit repeatable).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    if deterministic and device is not None and device.type == "cuda":
        # cuBLAS needs this for deterministic matmuls; harmless on CPU
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
