"""Order matters: the MLP-on-windows baseline against recurrent networks when order carries the label.

    python benchmarks/classify_order.py                  # the `order` task, T = 30
    python benchmarks/classify_order.py --length 60 --seeds 3

The `order` task (rnnkit.data.synthetic): random tokens in which A and B each occur
once; the label says which comes first — the lectures' "I got in the car and ..."
against its shuffle. Every model sees the same 2000 training sequences, trains the
same number of epochs through the `classify` task, and is scored on 1000 test
sequences:

- bag of steps: the MLP on one window as long as the sequence, its steps averaged
  (order-free by construction: it must sit at 50%);
- MLP on ordered windows of w steps, pooled by max over the windows: it sees the
  order only when A and B fall within w steps of each other;
- MLP on the whole sequence flattened in order (window = T): order is visible, but
  as T·V unrelated inputs, to be learnt position by position;
- LSTM and GRU, 32 units, last state.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from rnnkit.config import load_config  # noqa: E402
from rnnkit.tasks.classify import train_and_evaluate  # noqa: E402


def models(T: int, w: int) -> dict[str, dict]:
    mlp = {"architecture": "window_mlp", "hidden_size": 64, "pooling": "max"}
    return {
        "bag of steps (MLP)": {**mlp, "window": T, "window_mode": "bag"},
        f"MLP on windows of {w}": {**mlp, "window": w},
        f"MLP on the whole sequence (window {T})": {**mlp, "window": T},
        "LSTM-32, last state": {"cell": "lstm", "hidden_size": 32, "pooling": "last"},
        "GRU-32, last state": {"cell": "gru", "hidden_size": 32, "pooling": "last"},
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--length", type=int, default=30, help="T, tokens per sequence")
    p.add_argument("--window", type=int, default=5, help="w of the windowed MLP")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"order task, T = {args.length}, vocabulary 8, 2000 training sequences, {args.epochs} epochs\n")
    print("| model | parameters | test accuracy | train CPU s |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models(args.length, args.window).items():
            accs, cpu = [], []
            for seed in range(args.seeds):
                config = load_config({
                    "task": "classify",
                    "data": {"source": "order", "length": args.length, "alphabet": 8, "train_size": 2000,
                             "valid_size": 500, "test_size": 1000, "standardize": False, "batch_size": 32},
                    "model": model,
                    "optim": {"name": "adam", "lr": 3e-3},
                    "trainer": {"max_epochs": args.epochs, "clip_norm": 1.0, "log_every": 1000},
                    "run": {"dir": f"{tmp}/{len(accs)}", "seed": seed, "device": "cpu", "overwrite": True,
                            "threads": args.threads},
                })
                out = train_and_evaluate(config)
                accs.append(100 * out["test"]["accuracy"])
                cpu.append(out["train_cpu_s"])
                params = _count(config)
            spread = f" ± {statistics.stdev(accs):.1f}" if len(accs) > 1 else ""
            print(f"| {name} | {params:,} | {statistics.fmean(accs):.1f}%{spread} | {statistics.fmean(cpu):.0f} |",
                  flush=True)
    return 0


def _count(config) -> int:
    from rnnkit.tasks import get_task

    task = get_task("classify")(config)
    task.meta = {"kind": "class", "classes": ["0", "1"], "input_size": 8}
    return sum(q.numel() for q in task.build_model().parameters())


if __name__ == "__main__":
    sys.exit(main())
