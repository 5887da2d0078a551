"""Greff et al. 2017, "LSTM: A search space odyssey", on Bach chorales: the peephole LSTM and its eight variants.

    python benchmarks/greff2017.py                      # 9 models x 3 seeds x 150 epochs: ~8 CPU minutes
    python benchmarks/greff2017.py --epochs 400         # the table in RESULTS.md: ~26 CPU minutes
    python benchmarks/greff2017.py --variants peephole nfg cifg

Variants (rnnkit.cells.lstm, docs/core.md): vanilla = `peephole`; NIG no input gate, NFG no
forget gate, NOG no output gate, NIAF no input activation function, NOAF no output activation
function, NP no peepholes, CIFG coupled input and forget gate (f = 1 − i), FGR full gate
recurrence. Each gets the hidden size that brings its parameter count closest to the vanilla
LSTM's at --hidden units (the same budget; variants with fewer gates get more units).

The paper's findings (Greff et al. 2017, Sec. 5 and Fig. 3; TIMIT, IAM Online, JSB Chorales):
NFG and NOAF hurt significantly on every data set; CIFG and NP cost little or nothing; NIG,
NOG and NIAF hurt on speech and handwriting but not clearly on music; FGR brings no gain.
The verdict line compares each variant with the vanilla LSTM: "hurts" when its mean test
NLL is worse by more than twice the larger of the two seed spreads (and at least 0.05
nats), "helps" the other way round, else "no clear difference".
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chung2014 import spread, train_music  # noqa: E402

from rnnkit.models.polyphonic import PolyphonicModel  # noqa: E402

VARIANTS = ["peephole", "nig", "nfg", "nog", "niaf", "noaf", "np", "cifg", "fgr"]
PAPER = {
    "nig": ("no clear difference", "hurts on speech/handwriting, not clearly on music"),
    "nfg": ("hurts", "hurts on all three data sets"),
    "nog": ("no clear difference", "hurts on speech/handwriting, not clearly on music"),
    "niaf": ("no clear difference", "hurts on speech/handwriting, not clearly on music"),
    "noaf": ("hurts", "hurts on all three data sets"),
    "np": ("no clear difference", "costs little or nothing"),
    "cifg": ("no clear difference", "costs little or nothing"),
    "fgr": ("no clear difference", "no gain (more parameters, slightly worse on music)"),
}


def parameters(variant: str, hidden: int) -> int:
    model = PolyphonicModel(88, "lstm", hidden, variant=variant)
    return sum(p.numel() for p in model.parameters())


def matched_hidden(variant: str, budget: int) -> int:
    """The hidden size whose parameter count is closest to `budget` (the count grows with H: bisect)."""
    low, high = 1, 512
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if parameters(variant, mid) <= budget else (low, mid)
    return min((low, high), key=lambda h: abs(parameters(variant, h) - budget))


def verdict(base: list[float], other: list[float]) -> str:
    gap = statistics.fmean(other) - statistics.fmean(base)
    noise = max(statistics.stdev(base) if len(base) > 1 else 0.0, statistics.stdev(other) if len(other) > 1 else 0.0)
    margin = max(2 * noise, 0.05)
    if gap > margin:
        return "hurts"
    if gap < -margin:
        return "helps"
    return "no clear difference"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="key=value overrides of the recipe, for every run")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=VARIANTS)
    p.add_argument("--hidden", type=int, default=36, help="units of the vanilla (peephole) LSTM; sets the budget")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=150, help="epochs per run (best validation checkpoint kept)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    began = time.process_time()
    budget = parameters("peephole", args.hidden)
    variants = ["peephole"] + [v for v in args.variants if v != "peephole"]
    results: dict[str, list[dict]] = {}
    print(f"budget: {budget:,} parameters (peephole LSTM, {args.hidden} units); {args.seeds} seeds, "
          f"{args.epochs} epochs per run\n")
    print("| variant | hidden | params | train NLL | test NLL | test frame acc | CPU s per run |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for variant in variants:
            hidden = args.hidden if variant == "peephole" else matched_hidden(variant, budget)
            overrides = ["model.cell=lstm", f"model.variant={variant}", f"model.hidden_size={hidden}"]
            runs = [train_music(overrides + args.overrides, seed, Path(tmp), args.epochs) for seed in range(args.seeds)]
            results[variant] = runs
            print(f"| {variant} | {hidden} | {runs[0]['params']:,} "
                  f"| {spread([r['train']['nll_per_frame'] for r in runs])} "
                  f"| {spread([r['test']['nll_per_frame'] for r in runs])} "
                  f"| {spread([r['test']['frame_accuracy'] for r in runs])} "
                  f"| {statistics.fmean(r['cpu_s'] for r in runs):.0f} |", flush=True)
    base = [r["test"]["nll_per_frame"] for r in results["peephole"]]
    print("\nverdicts against the vanilla (peephole) LSTM, test NLL:")
    for variant in variants[1:]:
        ours = verdict(base, [r["test"]["nll_per_frame"] for r in results[variant]])
        expected, words = PAPER[variant]
        agree = "agrees" if ours == expected else "differs"
        gap = statistics.fmean(r["test"]["nll_per_frame"] for r in results[variant]) - statistics.fmean(base)
        print(f"  {variant.upper():5s} {gap:+.2f} nats: {ours}; paper: {words} -> {agree}")
    print(f"\ntotal CPU {time.process_time() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
