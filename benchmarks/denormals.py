"""What subnormal floats cost a long backward pass on a CPU, and what flushing them saves.

    python benchmarks/denormals.py                      # peephole LSTM and LSTM, T = 1000
    python benchmarks/denormals.py --cells gru --length 500

For each cell: train the adding problem (hidden 64, batch 32, Adam 3e-3, clip 1, one
thread) for --warmup updates with subnormals flushed, then time --reps updates each
way, paired in one process: with every subnormal flushed on this thread
(`torch.set_flush_denormal(True)`, what the Trainer does), with only rnnkit's own
flushing (`rnnkit.layers.kernels.denormals`: its autograd Function, and around torch's
fused LSTM kernel, which `Recurrent` runs for the standard LSTM on full-length batches,
the call and its backward nodes; the rest of torch keeps IEEE arithmetic), and with
nothing flushed (rnnkit's flushing switched off for the run).
Prints ms per update and the slowdown relative to flushed.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from long_range import CELLS, batch_tensors, generate, loss_and_score  # noqa: E402
from rnnkit.layers import recurrent  # noqa: E402
from rnnkit.layers.kernels import function  # noqa: E402
from rnnkit.models import SequenceClassifier  # noqa: E402

FLUSHING = function.flush_denormals
HOOKS = recurrent.flush_denormals, recurrent._flush_in_backward


def rnnkit_flushes(on: bool) -> None:
    """Switch rnnkit's own flushing (its Function, and around torch's fused LSTM) on or off."""
    function.flush_denormals = FLUSHING if on else contextlib.nullcontext
    recurrent.flush_denormals, recurrent._flush_in_backward = HOOKS if on else (
        contextlib.nullcontext, lambda *args, **kwargs: None)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", nargs="+", default=["peephole", "lstm"], choices=list(CELLS))
    p.add_argument("--length", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=150, help="updates before timing (subnormals appear as it trains)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not torch.set_flush_denormal(False):
        print("this CPU has no flush-to-zero mode: nothing to measure")
        return 0
    print(f"adding problem, T = {args.length}, hidden 64, batch 32, {args.threads} thread(s); ms per update "
          f"(median of {args.reps}) after {args.warmup} updates")
    print(f"{'cell':10s} {'all flushed':>12s} {'rnnkit only':>12s} {'none':>10s} {'none/flushed':>13s}")
    for cell in args.cells:
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        model = SequenceClassifier(2, 1, hidden_size=64, pooling="last", **CELLS[cell])
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)

        def update():
            x, lengths, y = batch_tensors(generate("adding", rng, 32, args.length, args))
            loss, _ = loss_and_score("adding", model, x, lengths, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

        torch.set_flush_denormal(True)
        for _ in range(args.warmup):
            update()
        times = {"all": [], "rnnkit": [], "none": []}
        for _ in range(args.reps):  # the three ways alternate, so a slower core slows all of them
            for way in times:
                torch.set_flush_denormal(way == "all")
                rnnkit_flushes(way != "none")
                start = time.perf_counter()
                update()
                times[way].append(1e3 * (time.perf_counter() - start))
                rnnkit_flushes(True)
                torch.set_flush_denormal(False)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"{cell:10s} {med['all']:12.0f} {med['rnnkit']:12.0f} {med['none']:10.0f} "
              f"{med['none'] / med['all']:12.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
