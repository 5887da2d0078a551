"""Ragged batches: a standard LSTM trained and run on variable-length sequences, rnnkit's
`Recurrent` (with `lengths`) against torch.nn.LSTM on a PackedSequence, in one run.

    python benchmarks/ragged_speed.py                 # 2 threads, 7 interleaved rounds
    python benchmarks/ragged_speed.py --threads 1 --reps 5

On a CPU oneDNN's LSTM takes no packed input, so torch.lstm on a PackedSequence runs a
chain of small operations per step. rnnkit trains such batches on its own loops
(`kernels.replaces_fused`) and leaves inference to torch. Lengths are uniform in
L/2 .. L (one sequence of L), the same for both; the loss is the sum of the outputs
at the real steps. Tokens/s counts real steps only; "×nn.LSTM" is rnnkit's
throughput over torch's in the same rounds (median over rounds).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from rnnkit import Recurrent  # noqa: E402
from rnnkit.layers import kernels  # noqa: E402

# name: (batch N, length L, input D, hidden H, layers, bidirectional)
SHAPES = {"A": (32, 100, 128, 256, 1, False), "A2bi": (32, 100, 128, 256, 2, True),
          "small": (16, 29, 12, 96, 2, True)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--shapes", default=",".join(SHAPES))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, rnnkit kernels: "
          f"{'C++' if kernels.extension.available() else 'python'}")
    print("| shape | N/L/D/H, layers | mode | nn.LSTM packed tok/s | rnnkit tok/s | ×nn.LSTM |")
    print("|---|---|---|---|---|---|")
    for name in args.shapes.split(","):
        N, L, D, H, layers, bi = SHAPES[name]
        torch.manual_seed(0)
        ours = Recurrent("lstm", D, H, num_layers=layers, bidirectional=bi)
        theirs = ours.to_torch()
        x = torch.randn(N, L, D)
        lengths = torch.randint(L // 2, L + 1, (N,))
        lengths[0] = L
        real = (torch.arange(L)[None, :] < lengths[:, None]).unsqueeze(-1).float()
        tokens = int(lengths.sum())

        def torch_run(train: bool):
            xx = x.clone().requires_grad_(train)
            packed = pack_padded_sequence(xx, lengths, batch_first=True, enforce_sorted=False)
            out, _ = theirs(packed)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=L)
            if train:
                (out * real).sum().backward()

        def ours_run(train: bool):
            xx = x.clone().requires_grad_(train)
            out, _ = ours(xx, None, lengths)
            if train:
                (out * real).sum().backward()

        for mode in ("train", "infer"):
            train = mode == "train"
            times = {"torch": [], "ours": []}
            for r in range(args.reps + 1):  # the first round warms up
                for who, fn in (("torch", torch_run), ("ours", ours_run)):
                    with torch.enable_grad() if train else torch.inference_mode():
                        start = time.perf_counter()
                        fn(train)
                        elapsed = time.perf_counter() - start
                    if r:
                        times[who].append(elapsed)
            ratios = [t / o for t, o in zip(times["torch"], times["ours"])]
            t_tok = tokens / statistics.median(times["torch"])
            o_tok = tokens / statistics.median(times["ours"])
            print(f"| {name} | {N}/{L}/{D}/{H}, {layers}{' bi' if bi else ''} | {mode} | {t_tok:,.0f} | "
                  f"{o_tok:,.0f} | {statistics.median(ratios):.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
