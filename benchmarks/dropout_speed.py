"""rnnkit's CPU dropout against torch's, alone and inside a language model's training step.

    python benchmarks/dropout_speed.py
    python benchmarks/dropout_speed.py --rounds 20 --hidden 512 --embedding 128   # a smaller embedding

Two measurements, each in interleaved rounds (torch, rnnkit, torch, ...) in one process,
medians printed with their ratio:

- dropout alone: `torch.nn.functional.dropout` and `rnnkit.layers.dropout` on a
  (streams, bptt, hidden) float32 tensor, p = 0.1;
- a whole training step of the character LM of configs/charlm-stdlib-60min.yaml
  (Embedding → 2-layer LSTM → Linear, dropout 0.1 on the embedding, between the layers
  and before the output; Adam, clipping; bf16 autocast on CPUs with AMX, as
  `precision: auto` does), once with every dropout torch's (and torch's kernel running
  both layers in one call) and once as rnnkit runs it.
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import time
from contextlib import contextmanager

import torch
from torch import nn

from rnnkit.models import LanguageModel
from rnnkit.train.device import resolve_precision

# the modules (rnnkit.layers exports functions of the same names)
rnnkit_dropout = importlib.import_module("rnnkit.layers.dropout")
recurrent = importlib.import_module("rnnkit.layers.recurrent")


def torch_dropout(x, p, training=True):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must lie in [0, 1], got {p}")
    return nn.functional.dropout(x, p, training=training)


@contextmanager
def torch_dropout_everywhere():
    """Every rnnkit dropout as torch's, and a stacked fused layer in one kernel call
    (torch drops out between its own layers)."""
    saved = rnnkit_dropout.dropout, recurrent.dropout, recurrent.Recurrent._forward_fused
    fused = recurrent.Recurrent._forward_fused

    def stacked(self, x, state, lengths):
        training = self.training
        if training:  # torch's own dropout between layers: run the stack as one call
            kind = self.cells[0].torch_kind
            run = {"lstm": torch.lstm, "gru": torch.gru}[kind]
            weights = [w for c in self.cells for w in (c.weight_ih, c.weight_hh, c.bias_ih, c.bias_hh)]
            hx = state if kind == "lstm" else state[0]
            result = run(x, hx, weights, True, self.num_layers, self.dropout, True, self.bidirectional, False)
            return result[0], tuple(result[1:])
        return fused(self, x, state, lengths)

    rnnkit_dropout.dropout = torch_dropout
    recurrent.dropout = torch_dropout
    recurrent.Recurrent._forward_fused = stacked
    try:
        yield
    finally:
        rnnkit_dropout.dropout, recurrent.dropout, recurrent.Recurrent._forward_fused = saved


def median_ms(times):
    return 1e3 * statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--bptt", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--embedding", type=int, default=512, help="E (the 60-minute recipe: 512)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    N, L, H, V, p = args.streams, args.bptt, args.hidden, 220, 0.1

    x = torch.randn(N, L, H)
    alone = {"torch": [], "rnnkit": []}
    for _ in range(args.rounds * 5):
        for name, fn in (("torch", torch_dropout), ("rnnkit", rnnkit_dropout.dropout)):
            start = time.perf_counter()
            fn(x, p)
            alone[name].append(time.perf_counter() - start)

    precision = resolve_precision("auto", torch.device("cpu"))
    tokens = torch.randint(0, V, (N, L + 1))
    models = {}
    for name in ("torch", "rnnkit"):
        torch.manual_seed(0)
        model = LanguageModel(V, "lstm", H, 2, embedding_size=args.embedding, dropout=p).train()
        models[name] = (model, torch.optim.Adam(model.parameters(), 2e-3), [None])

    def train_step(name):
        model, optimizer, state = models[name]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits, new_state = model(tokens[:, :-1], state[0])
            loss = nn.functional.cross_entropy(logits.float().reshape(-1, V), tokens[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        state[0] = tuple(s.detach() for s in new_state)

    steps = {"torch": [], "rnnkit": []}
    for round_ in range(args.rounds + 1):
        for name in ("torch", "rnnkit"):
            start = time.perf_counter()
            if name == "torch":
                with torch_dropout_everywhere():
                    train_step(name)
            else:
                train_step(name)
            if round_:  # the first round warms up
                steps[name].append(time.perf_counter() - start)

    print(f"{args.threads} threads, {args.rounds} interleaved rounds, medians; p = {p}, {precision}")
    print("| what | torch | rnnkit | torch ÷ rnnkit |")
    print("|---|---|---|---|")
    a, b = median_ms(alone["torch"]), median_ms(alone["rnnkit"])
    print(f"| dropout of a ({N}, {L}, {H}) float32 tensor | {a:.1f} ms | {b:.1f} ms | {a / b:.2f} |")
    a, b = median_ms(steps["torch"]), median_ms(steps["rnnkit"])
    print(f"| LM training step: 2×{H} LSTM, embedding {args.embedding}, {N} streams × {L} | "
          f"{a:.0f} ms ({N * L / a * 1e3:,.0f} chars/s) | {b:.0f} ms ({N * L / b * 1e3:,.0f} chars/s) | "
          f"{a / b:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
