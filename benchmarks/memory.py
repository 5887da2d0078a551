"""Peak memory of training: truncated BPTT over long streams vs full BPTT over long sequences.

    python benchmarks/memory.py                       # the table of issue 3
    python benchmarks/memory.py --tbptt 1e4 1e5 --full 100 1000

What runs: the real `rnnkit.train.Trainer` on a synthetic language-model task,
Embedding(64→64) → Recurrent LSTM (H=256) → Linear(256→64), batch N=32, Adam.
- TBPTT: a stream of T tokens (a real int64 tensor, cut by `StreamBatches` into
  N streams and (N, bptt=100) chunks), one epoch, the state carried and
  detached at every chunk boundary: T/3200 optimiser steps.
- Full BPTT: batches of N whole sequences of L tokens, backpropagated through
  all L steps: 2 optimiser steps.

How it is measured: every configuration runs in a fresh Python process, so
nothing allocated by one is reused by the next. The number is the process's
peak resident set size, `ru_maxrss` from getrusage, read after training; the
baseline is ru_maxrss after importing torch and rnnkit and before the Trainer
builds anything. Peak RSS counts everything the process touched: the data,
weights, optimiser state, activations kept for backward, and what the
allocator holds on to after freeing; it is the number the operating system
charges. "training" = peak − baseline. The data tensor itself (8 bytes per
token) is part of it and is shown separately.
Goal (issue 3): TBPTT peak grows ≤ 1.1× from 10^4 to 10^6 tokens; full BPTT grows O(L).

    python benchmarks/memory.py --per-step all        # memory per step of full BPTT, every cell

`--per-step CELLS` (names as in benchmarks/speed.py, or `all`) runs full BPTT at two
lengths (`--lengths`, default 200 and 1000) for each cell in the same model, each in a
fresh process, and prints the growth of the peak per step, (peak(L2) − peak(L1)) /
(L2 − L1), and its ratio to torch.nn.LSTM's measured the same way.
Goal (issue 4): no more than 1.2× nn.LSTM's.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

VOCAB, EMBED, HIDDEN, BATCH, BPTT = 64, 64, 256, 32, 100


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def build_rnn(cell: str, size_in: int, hidden: int):
    """The recurrent layer named as in benchmarks/speed.py (nn.LSTM: torch's own module)."""
    from torch import nn

    from rnnkit.layers import Recurrent

    if cell == "nn.LSTM":
        return nn.LSTM(size_in, hidden, batch_first=True)
    from speed import CONFIGS  # benchmarks/speed.py, beside this file

    name, options = CONFIGS[cell]
    options = dict(options)
    skip = options.pop("skip", 0)
    return Recurrent(name, size_in, hidden, skip=skip, **options)


def child(mode: str, size: int, hidden: int, batch: int, threads: int, cell: str = "lstm") -> dict:
    """Train one configuration in this (fresh) process; return the measurements."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    from torch import nn
    from torch.nn import functional as F

    from rnnkit.config import build_config
    from rnnkit.layers import Recurrent
    from rnnkit.tasks import Batch, LossOutput, Task, register_task
    from rnnkit.train import StreamBatches, Trainer, run_with_resets

    baseline = _maxrss_mb()

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            width = hidden if cell == "additive" else EMBED  # the additive cell has no input weights
            self.embed = nn.Embedding(VOCAB, width)
            self.rnn = Recurrent("lstm", width, hidden) if cell == "lstm" else build_rnn(cell, width, hidden)
            self.head = nn.Linear(hidden, VOCAB)

        def forward(self, x, state=None, reset=None):
            if isinstance(self.rnn, nn.LSTM):  # full BPTT only: no state carried
                return self.head(self.rnn(self.embed(x))[0]), None
            h, state = run_with_resets(self.rnn, self.embed(x), state, reset)  # (N, L, H)
            return self.head(h), state  # (N, L, V)

    @register_task("memory_bench")
    class MemoryBench(Task):
        def prepare_data(self):
            g = torch.Generator().manual_seed(0)
            if mode == "tbptt":
                self.tokens = torch.randint(VOCAB, (size,), generator=g)  # (T,) int64

        def build_model(self):
            return Net()

        def train_batches(self, epoch):
            if mode == "tbptt":
                return StreamBatches(self.tokens, batch, BPTT)
            g = torch.Generator().manual_seed(epoch)
            seqs = [torch.randint(VOCAB, (batch, size + 1), generator=g) for _ in range(2)]
            return [Batch(inputs=s[:, :-1], targets=s[:, 1:]) for s in seqs]

        def compute_loss(self, model, b, state):
            logits, state = model(b.inputs, state, b.reset)
            return LossOutput(F.cross_entropy(logits.flatten(0, 1), b.targets.flatten()), {}, state)

    with tempfile.TemporaryDirectory() as tmp:
        config = build_config({
            "task": "memory_bench",
            # a NaN (IRNN over 1000 steps) skips the update: the memory is what is measured
            "trainer": {"bptt": BPTT if mode == "tbptt" else 0, "max_epochs": 1, "log_every": 10**9,
                        "on_nonfinite": "skip"},
            "optim": {"name": "adam", "lr": 1e-3},
            "run": {"dir": os.path.join(tmp, "run"), "device": "cpu", "tensorboard": False},
        })
        start = time.perf_counter()
        result = Trainer(config, MemoryBench(config), stream=open(os.devnull, "w")).fit()
        seconds = time.perf_counter() - start
    peak = _maxrss_mb()
    return {"mode": mode, "size": size, "steps": result.step, "seconds": seconds, "baseline_mb": baseline,
            "peak_mb": peak, "training_mb": peak - baseline,
            "data_mb": size * 8 / 2**20 if mode == "tbptt" else 0.0}


def run_fresh(mode: str, size: int, hidden: int, batch: int, threads: int, cell: str = "lstm") -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(size), "--hidden", str(hidden),
                          "--batch", str(batch), "--threads", str(threads), "--cell", cell],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{cell} {mode} {size} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def per_step(cells: list[str], lengths: list[int], hidden: int, batch: int, threads: int) -> None:
    """Growth of the peak per step of full BPTT for each cell, against nn.LSTM's."""
    first, last = lengths
    print(f"# full BPTT, peak RSS growth per step between L={first} and L={last}, fresh process each; "
          f"H={hidden}, N={batch}")
    print(f"{'cell':<14} {'peak MB L1':>10} {'peak MB L2':>10} {'MB/step':>8} {'× nn.LSTM':>9}")
    reference = None
    for cell in ["nn.LSTM"] + [c for c in cells if c != "nn.LSTM"]:
        a, b = (run_fresh("full", n, hidden, batch, threads, cell) for n in lengths)
        slope = (b["peak_mb"] - a["peak_mb"]) / (last - first)
        reference = reference or slope
        print(f"{cell:<14} {a['peak_mb']:>10.0f} {b['peak_mb']:>10.0f} {slope:>8.3f} {slope / reference:>9.2f}",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tbptt", nargs="*", type=float, default=[1e4, 1e5, 1e6], help="stream lengths (tokens)")
    parser.add_argument("--full", nargs="*", type=float, default=[100, 1000, 5000], help="sequence lengths L")
    parser.add_argument("--hidden", type=int, default=HIDDEN)
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--per-step", metavar="CELLS",
                        help="comma list of cells (benchmarks/speed.py names) or all: memory per step of full BPTT")
    parser.add_argument("--lengths", nargs=2, type=int, default=[200, 1000], help="the two lengths of --per-step")
    parser.add_argument("--cell", default="lstm", help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.hidden, args.batch, args.threads,
                               args.cell)))
        return
    if args.per_step:
        from speed import CONFIGS

        known = [c for c, v in CONFIGS.items() if v is not None]
        cells = known if args.per_step == "all" else args.per_step.split(",")
        unknown = [c for c in cells if c not in known and c != "nn.LSTM"]
        if unknown:
            parser.error(f"unknown cell(s) {unknown}; expected names from {known}")
        per_step(cells, args.lengths, args.hidden, args.batch, args.threads)
        return

    import torch

    print(f"# peak RSS of training, fresh process each; LSTM H={args.hidden}, N={args.batch}, bptt={BPTT}, "
          f"torch {torch.__version__}, {args.threads or torch.get_num_threads()} threads")
    header = (f"{'mode':<6} {'length':>9} {'steps':>6} {'time s':>7} {'baseline MB':>11} {'peak MB':>8} "
              f"{'training MB':>11} {'data MB':>8} {'peak ×':>7} {'training ×':>10}")
    print(header)
    print("-" * len(header))
    for mode, sizes in (("tbptt", args.tbptt), ("full", args.full)):
        first = None
        for size in sizes:
            r = run_fresh(mode, int(size), args.hidden, args.batch, args.threads)
            first = first or r
            print(f"{mode:<6} {f'{int(size):.0e}' if mode == 'tbptt' else int(size):>9} {r['steps']:>6} "
                  f"{r['seconds']:>7.1f} {r['baseline_mb']:>11.0f} {r['peak_mb']:>8.0f} {r['training_mb']:>11.0f} "
                  f"{r['data_mb']:>8.1f} {r['peak_mb'] / first['peak_mb']:>7.2f} "
                  f"{r['training_mb'] / first['training_mb']:>10.2f}", flush=True)
    print("peak × and training × are ratios to the first (shortest) row of each mode.")


if __name__ == "__main__":
    main()
