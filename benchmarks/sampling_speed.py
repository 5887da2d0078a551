"""Tokens/s of `rnnkit sample` against a bare loop of the model's own single steps.

    python benchmarks/sampling_speed.py                    # 2x512 LSTM, 500 tokens, 10 rounds
    python benchmarks/sampling_speed.py --hidden-size 256 --num-layers 1 --length 5000

Both run the same LanguageModel (random weights: speed does not depend on training)
over the stdlib character vocabulary:
  bare    `logits, state = model.step(token, state)` in a loop under inference_mode,
          the token fixed: the model's own cost per token and nothing else;
  sample  the `charlm` task's `sample` (what `rnnkit sample RUN_DIR` runs): prime,
          temperature sampling, decoding each character and writing it to stdout
          (here a null stream) with a flush per token.
Rounds alternate the two, so slow drifts of the machine hit both; the table gives
the best round of each (as timeit does: other processes only ever slow a round
down), in wall-clock and in CPU time of this process (steadier on a shared
machine), and the ratio sample / bare (the goal: >= 0.8).

--no-onednn runs both with torch's oneDNN backend off. On a CPU a fused LSTM called
for a single step pays oneDNN's per-call setup (several ms for 2x512, far more than
the step's arithmetic); without it torch's native kernel does the step in a couple
of matrix products, so the sampling machinery's own share per token shows.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from types import SimpleNamespace

import torch

from rnnkit.config import build_config
from rnnkit.data import CharVocab
from rnnkit.tasks.charlm import CharLM


class NullStream(io.TextIOBase):
    """Accepts writes and flushes like a pipe that nobody reads."""

    def write(self, text: str) -> int:
        return len(text)


def timed(run, length: int) -> tuple[float, float]:
    """(tokens per wall second, tokens per CPU second) of run()."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return length / (time.perf_counter() - wall), length / (time.process_time() - cpu)


def bare_loop(model, length: int) -> tuple[float, float]:
    def run():
        token, state = torch.tensor([1]), None
        with torch.inference_mode():
            for _ in range(length):
                logits, state = model.step(token, state)
    return timed(run, length)


def sample_command(task, model, length: int) -> tuple[float, float]:
    args = SimpleNamespace(prime="def ", length=length, temperature=0.8, top_k=0, greedy=False, seed=123,
                           quiet=True, run_dir="-", checkpoint="best")

    def run():
        with contextlib.redirect_stdout(NullStream()):
            task.sample(model, args)
    return timed(run, length)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden-size", type=int, default=512)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--cell", default="lstm")
    parser.add_argument("--length", type=int, default=500, help="tokens per measurement")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--no-onednn", action="store_true", help="torch.backends.mkldnn off for both loops")
    args = parser.parse_args(argv)
    if args.no_onednn:
        torch.backends.mkldnn.enabled = False
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = build_config({"task": "charlm", "trainer": {"bptt": 128},
                           "model": {"cell": args.cell, "hidden_size": args.hidden_size,
                                     "num_layers": args.num_layers}})
    task = CharLM(config)
    task.vocab = CharVocab([chr(c) for c in range(32, 127)] + ["\n", "\t"] + [chr(c) for c in range(160, 283)])
    model = task.build_model().eval()
    bare_loop(model, 100), sample_command(task, model, 100)  # warm up
    bare, sampled = [], []
    for r in range(args.rounds):
        bare.append(bare_loop(model, args.length))
        sampled.append(sample_command(task, model, args.length))
        print(f"round {r}: bare {bare[-1][0]:,.0f} tok/s, sample {sampled[-1][0]:,.0f} tok/s", file=sys.stderr)
    (b, b_cpu), (s, s_cpu) = [[max(column) for column in zip(*rows)] for rows in (bare, sampled)]
    print(f"model: {args.num_layers}x{args.hidden_size} {args.cell}, vocab {len(task.vocab)}, "
          f"{torch.get_num_threads()} threads, oneDNN {'off' if args.no_onednn else 'on'}, "
          f"{args.length} tokens x {args.rounds} rounds (best round)")
    print("| loop | tokens/s (wall) | tokens per CPU second |")
    print("| --- | --- | --- |")
    print(f"| bare model.step loop | {b:,.0f} | {b_cpu:,.0f} |")
    print(f"| rnnkit sample (temperature 0.8, streamed) | {s:,.0f} | {s_cpu:,.0f} |")
    print(f"| ratio sample / bare | {s / b:.2f} | {s_cpu / b_cpu:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
