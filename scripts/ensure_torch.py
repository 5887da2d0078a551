"""Install the CPU build of torch 2.13.0 unless some torch is already importable.

A user's own torch (a CUDA build, a nightly) is kept as it is: rnnkit only
needs torch>=2.1. Installing `torch` unpinned on a machine without it would
pull a multi-gigabyte CUDA build, which is never what a CPU machine wants.
"""
import importlib.util
import subprocess
import sys

CPU_TORCH = "torch==2.13.0"

if importlib.util.find_spec("torch") is not None:
    import torch

    print(f"ensure_torch: keeping installed torch {torch.__version__}")
else:
    print(f"ensure_torch: no torch found, installing {CPU_TORCH} (CPU build)")
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", CPU_TORCH])
