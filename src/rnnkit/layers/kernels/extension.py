"""The C++ recurrence loops (src/rnnkit/csrc/recurrence.cpp), built on first use.

`available()` builds the extension once per machine with torch.utils.cpp_extension
(JIT, ninja) into a cache directory and loads it; later processes load the cached
library in well under a second. The build uses the compiler and the torch already
installed: it installs nothing and never pulls a second torch. Where it cannot be
built (no compiler, no ninja, a read-only cache, another platform) rnnkit logs that
once and runs the same loops in Python (python_loop.py): results are the same, only
slower.

    RNNKIT_NO_EXTENSION=1     never build or load it (the Python loops run)
    RNNKIT_EXTENSION_DIR=DIR  where the build is cached (default:
                              $XDG_CACHE_HOME/rnnkit or ~/.cache/rnnkit, per torch version)
    RNNKIT_CPU_CAPABILITY=X   build for DEFAULT, AVX2 or AVX512 instead of torch's own choice
    RNNKIT_GEMM=torch|own     the kernel of the large products (default: torch.mm on Intel
                              CPUs, the extension's own elsewhere; see `large_products`)
    RNNKIT_PACK_CACHE_MB=M    memory for weights kept packed between calls without a
                              backward (default 256; 0: pack on every call)
    RNNKIT_WORKSPACE_MB=M     memory for large buffers kept between calls (default 1024;
                              0: allocate every time); see `workspace_bytes`
    RNNKIT_SPLIT=rows|units|claimed   how a loop's threads share the work (default:
                              by the size of the weights; see docs/core.md)
    RNNKIT_SLOW_THREAD_US=U   for tests: thread 1 of a loop with rows apart waits U µs
                              after every step, so the others take rows over from it
    python -m rnnkit.layers.kernels    build it now and say how long it took

The first build compiles one file with only the ATen headers it needs (no pybind11,
no torch/extension.h): about 15 s on 2 cores here, 40 s under heavy load.

`forward` and `backward` have python_loop's signatures and results.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import sysconfig
import threading
import time
from pathlib import Path

import torch

log = logging.getLogger("rnnkit.kernels")

SOURCE = Path(__file__).resolve().parents[2] / "csrc" / "recurrence.cpp"
_lock = threading.Lock()
_state: dict = {"ops": None, "tried": False, "reason": None, "info": None, "gemm": None}


def disabled() -> bool:
    return os.environ.get("RNNKIT_NO_EXTENSION", "").strip().lower() not in ("", "0", "false", "no")


def _capability_flags() -> tuple[str, list[str]]:
    """torch's own CPU capability, so that at::vec uses the same instructions as torch."""
    capability = os.environ.get("RNNKIT_CPU_CAPABILITY", "").upper()
    if not capability:
        try:
            capability = torch.backends.cpu.get_cpu_capability()
        except Exception:  # older torch
            capability = "DEFAULT"
    if capability == "AVX512":
        return capability, ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma",
                            "-DCPU_CAPABILITY_AVX512", "-DCPU_CAPABILITY=AVX512"]
    if capability == "AVX2":
        return capability, ["-mavx2", "-mfma", "-DCPU_CAPABILITY_AVX2", "-DCPU_CAPABILITY=AVX2"]
    return "DEFAULT", ["-DCPU_CAPABILITY=DEFAULT"]


def build_directory() -> Path:
    root = os.environ.get("RNNKIT_EXTENSION_DIR")
    if root is None:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(cache, "rnnkit")
    capability, _ = _capability_flags()
    return Path(root) / f"torch-{torch.__version__}-{capability}"


def _ninja_on_path() -> None:
    """torch runs `ninja` from PATH; the pip-installed one (a dependency of rnnkit) sits
    beside this interpreter, which is not on PATH when a venv's python runs directly."""
    if shutil.which("ninja"):
        return
    candidates = [sysconfig.get_path("scripts"), os.path.dirname(sys.executable)]
    try:
        import ninja  # the PyPI package

        candidates.insert(0, ninja.BIN_DIR)
    except Exception:
        pass
    for directory in candidates:
        if directory and os.path.exists(os.path.join(directory, "ninja")):
            os.environ["PATH"] = directory + os.pathsep + os.environ.get("PATH", "")
            return


def _build():
    from torch.utils import cpp_extension

    _ninja_on_path()

    capability, flags = _capability_flags()
    cflags = ["-O3", "-fopenmp", "-ffp-contract=fast", *flags]
    source = SOURCE.read_bytes()
    tag = hashlib.sha1(source + " ".join(cflags).encode()).hexdigest()[:10]
    directory = build_directory() / tag
    directory.mkdir(parents=True, exist_ok=True)
    lock = directory / "lock"  # left behind by a build that was killed: torch would wait forever
    if lock.exists() and time.time() - lock.stat().st_mtime > 600:
        lock.unlink(missing_ok=True)
    start = time.perf_counter()
    cpp_extension.load(name=f"rnnkit_recurrence_{tag}", sources=[str(SOURCE)], extra_cflags=cflags,
                       extra_ldflags=["-fopenmp"], build_directory=str(directory),
                       is_python_module=False, verbose=False)
    log.info("rnnkit: recurrence extension ready in %.1f s (%s)", time.perf_counter() - start, directory)
    return torch.ops.rnnkit_recurrence


def available() -> bool:
    """True when the C++ loops can run (built and loaded now if need be)."""
    if _state["ops"] is not None:
        return True
    if _state["tried"] or disabled():
        return False
    with _lock:
        if not _state["tried"]:
            try:
                _state["ops"] = _build()
            except Exception as error:  # no compiler, no ninja, unwritable cache, ...
                _state["reason"] = f"{type(error).__name__}: {str(error).strip().splitlines()[-1:]}"
                log.warning("rnnkit: the C++ recurrence extension could not be built (%s); "
                            "running the recurrence loops in Python, which is slower. "
                            "Set RNNKIT_NO_EXTENSION=1 to skip the attempt.", _state["reason"])
            _state["tried"] = True
    return _state["ops"] is not None


def _blocks(spec):
    return [spec.block(g) for g in "ifgo"] if spec.kind == "lstm" else [-1, -1, -1, -1]



def forward(spec, xp, h_init, c0, g0, weight_hh, bias_rec, weight_skip, peep, weight_gate,
            lengths, save, x=None, weight_ih=None, bias_in=None):
    """python_loop.forward's contract; with x (L, N, D), weight_ih and bias_in instead of xp
    (None) the input product runs inside each step (see `projects_inside`)."""
    hbuf, cs, gs, acts = _state["ops"].forward(
        spec.kind_code, spec.flags, _blocks(spec), spec.skip, xp, x, weight_ih, bias_in, h_init, c0, g0,
        weight_hh, bias_rec, weight_skip, peep, weight_gate, lengths, save)
    return hbuf, cs, gs, acts


def projects_inside(spec, batch_size: int, training: bool) -> bool:
    """Whether the input product should run inside the steps (LSTM and Elman, where the
    extension does its own products): no (L, N, G·H) projection is then stored. Measured
    (benchmarks/speed.py shapes, 1 thread): faster from two rows on in inference and from
    about sixteen in training; a single row streams its input weights once per step, so
    it keeps the one large product."""
    if _state["info"] is None:
        _state["info"] = list(_state["ops"].info())
    own, small_rows = _state["info"]
    if spec.kind not in ("lstm", "rnn_tanh", "rnn_relu") or not (own or batch_size <= small_rows):
        return False
    return batch_size >= (16 if training else 2)


def pack_cache_entries(clear: bool = False) -> int:
    """Weights whose packed form the extension keeps between calls without a backward
    (after emptying that cache when `clear`). See `PackCache` in recurrence.cpp."""
    return int(_state["ops"].pack_cache_entries(clear))


def rows_handed_over() -> int:
    """Batch rows that one thread of a loop took over from a slower one since the last
    call (see `run_rows_balanced` in recurrence.cpp)."""
    return int(_state["ops"].rows_handed_over())


def backward(spec, grad_hbuf, grad_c, grad_g, hbuf, cs, gs, acts, weight_hh, bias_rec,
             weight_skip, peep, weight_gate, lengths):
    dxp, dh_init, dc0, dg0, extra = _state["ops"].backward(
        spec.kind_code, spec.flags, _blocks(spec), spec.skip, grad_hbuf, grad_c, grad_g, hbuf,
        cs, gs, acts, weight_hh, weight_skip, peep, weight_gate, lengths)
    return dxp, dh_init, dc0, dg0, extra


def own_mm(a, b, bias=None):
    """a (M, K) · b (K, N) (+ bias (N,)) with the extension's blocked kernel; any strides."""
    return _state["ops"].mm(a, b, bias, False)


def blas_mm(a, b, bias=None):
    """torch.mm / torch.addmm into a buffer of the extension's workspace."""
    return _state["ops"].mm(a, b, bias, True)


def workspace_bytes(release: bool = False) -> int:
    """Bytes of large buffers the extension keeps between calls (training steps allocate
    the same ones every time; see `Workspace` in recurrence.cpp), after releasing the
    idle ones when `release`."""
    return int(_state["ops"].workspace_bytes(release))


def _cpu_vendor() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def large_products() -> str:
    """Which kernel runs the large products over all L·N rows (the input projection, the
    weight and input gradients): 'torch' (torch.mm, the BLAS torch was built with) on Intel
    CPUs, 'own' (the extension's blocked kernel) elsewhere. On an Intel Xeon (AVX-512)
    torch.mm ran at 296 GFLOP/s against 214 and lifted training of GRU, peephole LSTM
    and Elman by 11–25% at benchmarks/speed.py's shape B; on AMD CPUs MKL runs its AVX2
    kernels and the extension's own is the faster. RNNKIT_GEMM=torch or own overrides.
    The choice is fixed per machine, so runs there stay bit-for-bit repeatable."""
    if _state.get("gemm") is None:
        choice = os.environ.get("RNNKIT_GEMM", "").strip().lower()
        if choice not in ("torch", "own"):
            choice = "torch" if _cpu_vendor() == "GenuineIntel" else "own"
        _state["gemm"] = choice
    return _state["gemm"]


def mm(a, b, bias=None):
    """a (M, K) · b (K, N) (+ bias (N,)), any strides, by the kernel `large_products()` names."""
    if large_products() == "torch":
        return blas_mm(a, b, bias)
    return own_mm(a, b, bias)


def main() -> None:
    """Build (or load) the extension now and say how long it took."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    began = time.perf_counter()
    ok = available()
    print(f"rnnkit recurrence extension {'ready' if ok else 'unavailable: ' + str(_state['reason'])} "
          f"after {time.perf_counter() - began:.1f} s (cache {build_directory()})")
