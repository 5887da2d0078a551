"""Chung et al. 2014 on Bach chorales: tanh RNN vs GRU vs LSTM at about 20k parameters each.

    python benchmarks/chung2014.py                          # 3 cells x 3 seeds x 400 epochs: ~7 CPU minutes
    python benchmarks/chung2014.py --seeds 2 --epochs 100   # shorter (the gated cells are still learning)
    python benchmarks/chung2014.py --cells lstm --hidden 128 --epochs 200 model.dropout=0.3

Chung, Gulcehre, Cho & Bengio 2014, "Empirical evaluation of gated recurrent neural
networks on sequence modeling", Table 2, JSB Chorales (NLL per time step, summed over the
88 keys; train / test): tanh 8.82 / 9.19, GRU 6.94 / 8.54, LSTM 8.15 / 8.67, each model
about 20k parameters (hidden sizes about 100, 46 and 36). Here: music21's chorales, quarter-
note frames, transposed to C, split by piece (rnnkit.data.music) — not byte-identical to
JSB Chorales, so compare the ordering and the band, not the decimals.

Each run trains `configs/chorales-lstm.yaml` with the cell and size swapped in, keeps the
checkpoint with the best validation NLL (early stopping in effect, as Chung et al. did) and
evaluates it on the train and test splits. One thread per run; the CPU time is printed.
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from rnnkit.cli import load_run  # noqa: E402
from rnnkit.config import load_config  # noqa: E402
from rnnkit.tasks.registry import get_task  # noqa: E402
from rnnkit.train import Trainer, evaluate  # noqa: E402

RECIPE = ROOT / "configs" / "chorales-lstm.yaml"
CHUNG = {"rnn": (8.82, 9.19), "gru": (6.94, 8.54), "lstm": (8.15, 8.67)}  # JSB, train / test
SIZES = {"rnn": 100, "gru": 46, "lstm": 36}
NAMES = {"rnn": "tanh RNN", "gru": "GRU", "lstm": "LSTM"}


def train_music(overrides: list[str], seed: int, workdir: Path, epochs: int, recipe: Path = RECIPE) -> dict:
    """Train one music run; evaluate its best-validation checkpoint on train and test.

    Returns {"params", "train", "test" (metric dicts), "valid_best", "cpu_s", "epochs_run", "best_epoch"}:
    evaluation on the best checkpoint, cpu_s the process CPU time of training.
    """
    run_dir = workdir / f"run-{abs(hash((tuple(overrides), seed))) % 10**8}"
    config = load_config(str(recipe), overrides + [f"run.seed={seed}", f"run.dir={run_dir}", "run.device=cpu",
                                                   "run.overwrite=true", "run.threads=1",
                                                   f"trainer.max_epochs={epochs}"])
    task = get_task("music")(config)
    start = time.process_time()
    result = Trainer(config, task, stream=io.StringIO()).fit()
    cpu = time.process_time() - start
    best, model, _, _ = load_run(run_dir, "best", "cpu")
    best.splits = task.splits
    per_epoch = len(task.train_batches(0))
    out = {"params": sum(p.numel() for p in model.parameters()), "cpu_s": cpu, "epochs_run": result.epoch,
           "valid_best": result.best_value, "best_epoch": -(-result.best_step // per_epoch)}
    for split in ("train", "test"):
        out[split] = evaluate(best, model, best.eval_batches(split), device=torch.device("cpu"))
    return out


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {statistics.stdev(values):.2f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="key=value overrides of the recipe, for every run")
    p.add_argument("--cells", nargs="+", choices=list(SIZES), default=list(SIZES))
    p.add_argument("--hidden", type=int, default=0, help="one hidden size for every cell (0: Chung's sizes)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=400, help="epochs per run (best validation checkpoint kept)")
    p.add_argument("--figure", metavar="PNG", default="",
                   help="also draw the test NLL of each cell beside Chung's (matplotlib)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    began = time.process_time()
    print("| model | hidden | params | train NLL | test NLL | test frame acc | best epoch | Chung et al. train / test "
          "| CPU s per run |")
    print("|---|---|---|---|---|---|---|---|---|")
    table: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cell in args.cells:
            hidden = args.hidden or SIZES[cell]
            overrides = [f"model.cell={cell}", f"model.hidden_size={hidden}"]
            overrides += ["model.nonlinearity=tanh"] if cell == "rnn" else []
            runs = [train_music(overrides + args.overrides, seed, Path(tmp), args.epochs) for seed in range(args.seeds)]
            table[cell] = [r["test"]["nll_per_frame"] for r in runs]
            chung = "%.2f / %.2f" % CHUNG[cell]
            print(f"| {NAMES[cell]} | {hidden} | {runs[0]['params']:,} "
                  f"| {spread([r['train']['nll_per_frame'] for r in runs])} "
                  f"| {spread([r['test']['nll_per_frame'] for r in runs])} "
                  f"| {spread([r['test']['frame_accuracy'] for r in runs])} "
                  f"| {', '.join(str(r['best_epoch']) for r in runs)} "
                  f"| {chung} | {statistics.fmean(r['cpu_s'] for r in runs):.0f} |", flush=True)
    print(f"\n{args.seeds} seeds, {args.epochs} epochs each, NLL in nats per frame summed over 88 keys; "
          f"total CPU {time.process_time() - began:.0f} s")
    if args.figure:
        print(draw(table, args.figure, f"{args.seeds} seeds, {args.epochs} epochs"))
    return 0


def draw(table: dict[str, list[float]], path: str, note: str) -> str:
    """Test NLL per cell (each seed a dot, the mean a bar) beside Chung et al.'s JSB test figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    for x, (cell, values) in enumerate(table.items()):
        ax.bar(x - 0.18, statistics.fmean(values), 0.34, color="tab:blue", label="rnnkit, chorales" if x == 0 else None)
        ax.plot([x - 0.18] * len(values), values, "k.", ms=4)
        ax.bar(x + 0.18, CHUNG[cell][1], 0.34, color="tab:orange", label="Chung et al. 2014, JSB" if x == 0 else None)
    ax.set_xticks(range(len(table)), [f"{NAMES[c]}\n{SIZES[c]} units" for c in table])
    ax.set_ylim(8.0, max(max(v) for v in table.values()) + 0.4)
    ax.set_ylabel("test NLL per frame (nats)")
    ax.set_title(f"tanh RNN vs GRU vs LSTM, ~20k parameters ({note})", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


if __name__ == "__main__":
    sys.exit(main())
