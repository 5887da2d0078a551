"""Where a character LM and the Kneser-Ney n-gram differ: bits/char per file of a split.

    python benchmarks/lm_per_file.py runs/charlm-stdlib-60min --order 8 --weight 0.7892
    python benchmarks/lm_per_file.py runs/charlm-stdlib-60min --split valid --top 20

Scores every character of the split with the run's model (statically, the state
carried over the whole split, chunked as `rnnkit eval` chunks it), with the
Kneser-Ney model of `--order` fitted on the run's training split, and with their
mixture (w·p_model + (1 − w)·p_ngram; w is `--weight`, or fitted by EM on the
validation split as `rnnkit eval --ngram` does). Prints, per file, its characters and
the three bits/char, sorted by how much of the mixture's gain over the model alone the
file holds. The first character of the split is not a target and is left out, as in
`rnnkit eval`, and so are the last characters the chunking cuts off.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rnnkit.cli import load_run  # noqa: E402
from rnnkit.models import KneserNeyLM, fit_mix_weight, mix_log_probs  # noqa: E402
from rnnkit.tasks.charlm import NgramStream, stream_log_probs  # noqa: E402
from rnnkit.train.device import resolve_precision  # noqa: E402
from rnnkit.train.tbptt import StreamBatches  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("--split", default="test")
    p.add_argument("--order", type=int, default=8)
    p.add_argument("--weight", type=float, default=None, help="the model's weight (default: EM on valid)")
    p.add_argument("--top", type=int, default=12, help="files to print")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    task, model, config, _ = load_run(args.run_dir)
    task.prepare_data()
    if task.vocab.kind != "char":
        raise SystemExit(f"{args.run_dir}: a {task.vocab.kind}-level run; files are cut by characters here")
    device = next(model.parameters()).device
    precision = resolve_precision(config.trainer.precision, device)
    ngram = KneserNeyLM(args.order, len(task.vocab)).fit(task.tokens("train").numpy())

    def scored(split):
        tokens = task.tokens(split)
        chunks = task.eval_batches(split)
        stream = NgramStream(chunks, torch.from_numpy(ngram.log_probs(tokens.numpy())).float())
        model_lp, ngram_lp = stream_log_probs(model, stream, device, precision)
        # which token of the split each target is: the positions, chunked as the tokens were
        positions = StreamBatches(torch.arange(len(tokens)), chunks.streams, chunks.bptt)
        where = torch.cat([chunk.targets.flatten() for chunk in positions]).numpy()
        return len(tokens), where, model_lp.double().numpy(), ngram_lp.double().numpy()

    weight = args.weight
    if weight is None:
        _, _, a, b = scored("valid")
        weight = fit_mix_weight(torch.from_numpy(a), torch.from_numpy(b))
    T, where, a, b = scored(args.split)
    mixed = mix_log_probs(torch.from_numpy(a), torch.from_numpy(b), weight).numpy()
    per_token = np.full((3, T), np.nan)
    per_token[:, where] = np.stack([a, b, mixed])

    rows, start = [], 0
    for doc in task.corpus.documents(args.split):
        n = sum(len(block) for block in doc.blocks())
        part = per_token[:, start:start + n]
        part = part[:, ~np.isnan(part[0])]
        start += n
        if part.shape[1]:
            rows.append((doc.name, part.shape[1], *(-part.sum(1) / math.log(2))))
    if start != T:
        raise SystemExit(f"the {args.split} split's files hold {start} characters, its tokens {T}")
    gain = sum(r[2] - r[4] for r in rows)
    rows.sort(key=lambda r: r[4] - r[2])
    print(f"{args.split} split, {len(rows)} files; Kneser-Ney order {args.order}; model weight {weight:.4f}\n")
    print("| file | characters | model | n-gram | mixture | share of the mixture's gain |")
    print("|---|---|---|---|---|---|")
    for name, n, m, k, x in rows[:args.top]:
        print(f"| {name} | {n:,} | {m / n:.3f} | {k / n:.3f} | {x / n:.3f} | {100 * (m - x) / gain:.1f}% |")
    n = sum(r[1] for r in rows)
    print(f"| all | {n:,} | {sum(r[2] for r in rows) / n:.3f} | {sum(r[3] for r in rows) / n:.3f} | "
          f"{sum(r[4] for r in rows) / n:.3f} | |")
    beaten = [r[0] for r in rows if r[3] < r[2]]
    print(f"\nfiles where the n-gram beats the model: {len(beaten)} of {len(rows)}"
          + (f" ({', '.join(beaten[:8])}{', ...' if len(beaten) > 8 else ''})" if beaten else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
