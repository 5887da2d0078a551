"""Training and inference throughput of every rnnkit cell against torch.nn in one run.

    python benchmarks/speed.py                      # shapes A, B, C, 5 interleaved rounds
    python benchmarks/speed.py --shapes A --reps 3 --cells lstm,lstm:peephole

Shapes (batch N, length L, input D, hidden H): A = 32/100/128/256, B = 64/200/256/512,
C = 1/1000/64/256. Training = forward + backward of one single-layer Recurrent on a
sum-of-outputs loss; inference = forward under torch.inference_mode. Each round runs
every configuration once, in order, so slow drifts of the machine hit all of them
alike; the table gives the median over rounds, tokens/s (N·L per second), the ratio
to torch.nn.LSTM measured in the same rounds, the ratio to the torch module that
computes the same family (nn.GRU for GRUs, nn.RNN for Elman cells), and achieved
GFLOP/s of training against the sgemm peak. The peak is measured at the start (the
fastest square product of 1024, 2048 and 4096) and again in every round (2048 only),
because a shared machine's speed drifts: "% peak" is the median over rounds of the
round's GFLOP/s against that round's peak.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time

import torch
from torch import nn

from rnnkit import Recurrent
from rnnkit.layers import kernels

SHAPES = {"A": (32, 100, 128, 256), "B": (64, 200, 256, 512), "C": (1, 1000, 64, 256)}

# name -> (cell, options); the first entries are torch's own modules.
CONFIGS = {
    "nn.LSTM": None, "nn.GRU": None, "nn.RNN": None,
    "lstm": ("lstm", {}),
    **{f"lstm:{v}": ("lstm", {"variant": v})
       for v in ("peephole", "nig", "nfg", "nog", "niaf", "noaf", "np", "cifg", "fgr")},
    "gru": ("gru", {}), "gru:original": ("gru", {"variant": "original"}),
    "rnn:tanh": ("rnn", {}), "rnn:relu": ("rnn", {"nonlinearity": "relu"}),
    "irnn": ("irnn", {}), "additive": ("additive", {}),
    "lstm+skip2": ("lstm", {"skip": 2}),
}
TORCH_FAMILY = {"lstm": "nn.LSTM", "gru": "nn.GRU", "rnn": "nn.RNN", "irnn": "nn.RNN"}


def build(name: str, D: int, H: int) -> nn.Module:
    if name == "nn.LSTM":
        return nn.LSTM(D, H, batch_first=True)
    if name == "nn.GRU":
        return nn.GRU(D, H, batch_first=True)
    if name == "nn.RNN":
        return nn.RNN(D, H, batch_first=True)
    cell, options = CONFIGS[name]
    options = dict(options)
    skip = options.pop("skip", 0)
    size_in = H if cell == "additive" else D
    return Recurrent(cell, size_in, H, skip=skip, **options)


def flops_per_token(name: str, D: int, H: int) -> float:
    """Floating-point operations of the matrix products of one training token (forward
    and backward; the input needs no gradient): the input product twice (forward, weight
    gradient) and the recurrent product three times (forward, weight gradient, state
    gradient)."""
    if name == "additive":
        return 0.0
    family = name.split(":")[0].split("+")[0]
    gates = {"nn.LSTM": 4, "lstm": 4, "nn.GRU": 3, "gru": 3}.get(family, 1)
    if family == "lstm" and ":" in name:
        gates = {"nig": 3, "nfg": 3, "nog": 3, "cifg": 3}.get(name.split(":")[1], 4)
    recurrent = 2.0 * gates * H * H
    if name.endswith("fgr"):
        recurrent += 2.0 * 9 * H * H
    if "skip" in name:
        recurrent += 2.0 * gates * H * H
    return 2 * (2.0 * gates * H * D) + 3 * recurrent


def run_path(module: nn.Module, x: torch.Tensor, grad: bool = True) -> str:
    """Which code computes `module` on `x`, in training (`grad`) or inference: torch's own
    module, torch's fused kernel (reached through Recurrent), rnnkit's C++ kernels, or
    their Python fallback."""
    if not isinstance(module, Recurrent):
        return "torch"
    if module.uses_fused and not kernels.replaces_fused(module.cells[0], x, None, grad):
        return "torch fused"
    if not kernels.enabled():
        return "python loop"
    return "rnnkit C++" if kernels.extension.available() else "rnnkit python"


@contextlib.contextmanager
def python_loop(on: bool):
    """Recurrent's plain Python loop (input product hoisted, no kernels) while `on`, for
    torch's configurations too (they would otherwise fall back to torch's kernel)."""
    before = os.environ.get("RNNKIT_KERNEL")
    replaces = kernels.replaces_fused
    if on:
        os.environ["RNNKIT_KERNEL"] = "loop"
        kernels.replaces_fused = lambda *args, **kwargs: True
    try:
        yield
    finally:
        if on:
            kernels.replaces_fused = replaces
            if before is None:
                os.environ.pop("RNNKIT_KERNEL", None)
            else:
                os.environ["RNNKIT_KERNEL"] = before


def time_call(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def round_peak() -> float:
    """The sgemm peak now: the faster of torch.mm and rnnkit's own kernel on 2048², best of 3."""
    blas, own = measure_peak(sizes=(2048,), reps=3)
    return max(blas, own) if own == own else blas


def measure_peak(sizes=(1024, 2048, 4096), reps: int = 5) -> tuple[float, float]:
    """fp32 GFLOP/s of the fastest square product over `sizes`, with the threads set:
    (torch.mm, i.e. the BLAS torch was built with; rnnkit's own blocked kernel, which
    its C++ loops use, or nan without the extension). On CPUs where the BLAS is not
    tuned (MKL on AMD) the second is the higher and the honest peak."""
    own = kernels.extension.own_mm if kernels.extension.available() else None
    best = {"blas": 0.0, "own": float("nan") if own is None else 0.0}
    for size in sizes:
        a, b = torch.randn(size, size), torch.randn(size, size)
        for key, fn in (("blas", torch.mm), ("own", own)):
            if fn is None:
                continue
            fn(a, b)
            fastest = min(time_call(lambda: fn(a, b)) for _ in range(reps))
            best[key] = max(best[key], 2 * size**3 / fastest / 1e9)
    return best["blas"], best["own"]


def step_latency(module: nn.Module, D: int, reps: int = 200) -> float:
    """Median seconds for one time step at batch 1 (`Recurrent.step` or a length-1 nn call)."""
    x = torch.randn(1, D)
    with torch.inference_mode():
        if isinstance(module, Recurrent) and not module.bidirectional:
            state = None
            fn = lambda: module.step(x, state)  # noqa: E731
        else:
            x3 = x.unsqueeze(1)
            fn = lambda: module(x3)  # noqa: E731
        for _ in range(10):
            fn()
        return statistics.median(time_call(fn) for _ in range(reps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="A,B,C", help="comma list of A, B, C")
    parser.add_argument("--reps", type=int, default=5, help="interleaved rounds (median taken)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cells", default="all", help="comma list of config names, or all")
    parser.add_argument("--markdown", help="also write the table to this file")
    parser.add_argument("--python-loop", action="store_true",
                        help="also time training on Recurrent's plain Python loop (column ×py loop)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    names = list(CONFIGS) if args.cells == "all" else ["nn.LSTM", "nn.GRU", "nn.RNN"] + [
        n for n in args.cells.split(",") if n not in ("nn.LSTM", "nn.GRU", "nn.RNN")]
    blas, own = measure_peak()
    peak = max(blas, own) if own == own else blas
    print(f"torch {torch.__version__}, {args.threads} threads, sgemm peak {peak:.0f} GFLOP/s "
          f"(torch.mm {blas:.0f}, rnnkit mm {own:.0f}), median of {args.reps} interleaved rounds")

    lines = ["| shape | config | path | train tok/s | ×nn.LSTM | ×torch family | infer tok/s | ×nn.LSTM "
             "| train GFLOP/s | % peak | step µs | step ÷ nn.LSTM step | train ×py loop |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    print(lines[0])
    for shape in args.shapes.split(","):
        N, L, D, H = SHAPES[shape]
        modules = {n: build(n, D, H) for n in names}
        inputs = {n: torch.randn(N, L, H if n == "additive" else D) for n in names}
        if "additive" in modules:
            inputs["additive"].requires_grad_(True)  # no parameters: backward through the input

        def train(n, loop=False):
            m, x = modules[n], inputs[n]
            m.zero_grad(set_to_none=True)
            with python_loop(loop):
                out, _ = m(x)
                out.sum().backward()

        def infer(n):
            with torch.inference_mode():
                modules[n](inputs[n])

        # the plain Python loop, for configurations torch's fused kernel does not compute
        looped = [n for n in names if isinstance(modules[n], Recurrent) and run_path(modules[n], inputs[n])
                  not in ("torch fused", "python loop")] if args.python_loop else []
        for n in names:  # warm-up
            train(n)
            infer(n)
        times = {n: {"train": [], "infer": [], "loop": []} for n in names}
        peaks = []  # the sgemm peak of each round
        for _ in range(args.reps):
            peaks.append(round_peak())
            for n in names:
                times[n]["train"].append(time_call(lambda: train(n)))
                times[n]["infer"].append(time_call(lambda: infer(n)))
                if n in looped:
                    times[n]["loop"].append(time_call(lambda: train(n, loop=True)))
        tokens = N * L
        speed = {n: {k: tokens / statistics.median(v) if v else float("nan") for k, v in t.items()}
                 for n, t in times.items()}
        steps = {n: step_latency(modules[n], D if n != "additive" else H) for n in names} if shape == "C" else {}
        base = speed["nn.LSTM"]
        for n in names:
            family = TORCH_FAMILY.get(n.split(":")[0].split("+")[0], n)
            fam = speed[family]["train"] if family in speed else float("nan")
            path = run_path(modules[n], inputs[n])
            if run_path(modules[n], inputs[n], grad=False) != path:
                path += f" (inference: {run_path(modules[n], inputs[n], grad=False)})"
            gflops = flops_per_token(n, D, H) * speed[n]["train"] / 1e9
            share = statistics.median(flops_per_token(n, D, H) * tokens / t / 1e9 / p
                                      for t, p in zip(times[n]["train"], peaks))
            step_cells = ("–", "–")
            if steps:
                step_cells = (f"{steps[n] * 1e6:.0f}", f"{steps[n] / steps['nn.LSTM']:.2f}")
            loop_cell = f"{speed[n]['train'] / speed[n]['loop']:.2f}" if n in looped else "–"
            row = (f"| {shape} | {n} | {path} | {speed[n]['train']:.0f} | {speed[n]['train'] / base['train']:.2f} "
                   f"| {speed[n]['train'] / fam:.2f} | {speed[n]['infer']:.0f} "
                   f"| {speed[n]['infer'] / base['infer']:.2f} | {gflops:.1f} | {100 * share:.0f} "
                   f"| {step_cells[0]} | {step_cells[1]} | {loop_cell} |")
            lines.append(row)
            print(row, flush=True)
        print(f"shape {shape}: sgemm peak by round {', '.join(f'{p:.0f}' for p in peaks)} GFLOP/s", flush=True)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
