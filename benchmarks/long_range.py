"""Which cells learn long-term dependencies: the adding problem, parity and copy, as T grows.

    python benchmarks/long_range.py adding --lengths 50 100 200 500 1000
    python benchmarks/long_range.py parity --lengths 5 10 20 50
    python benchmarks/long_range.py copy --lengths 10 20 50 100      # copy: the delay
    python benchmarks/long_range.py adding --cells lstm --lengths 1000 --budget 10000

For each task, length and cell: train from scratch on fresh seeded batches with one
fixed recipe (Adam, gradient-norm clipping, the same hidden size and budget of
updates for every cell), check the validation set every `--eval-every` updates, and
stop as soon as it is solved. A cell "solves" a length when its validation figure
(500 sequences) crosses the threshold within the budget; the table then shows the
updates it took and, in brackets, the figure on 2000 further test sequences at that
point (which can sit just across the threshold):

    adding  test MSE < 0.01     (always answering 1 scores 0.167)
    parity  test accuracy ≥ 99% on the final bit (chance 50%)
    copy    test accuracy ≥ 99% per recalled symbol (chance 1/alphabet)

The cells (rnnkit names): elman = rnn tanh, irnn = rnn relu with identity recurrent
init (Le et al. 2015), gru, lstm = standard (forget bias 1), peephole = Greff et al.'s
vanilla LSTM. Every run uses rnnkit.models and rnnkit.data.synthetic; the training
loop is written out here (not the Trainer) so it can stop at the threshold.
Results are appended as JSON lines to --json as they come (a long sweep can be stopped
and its rows kept), and a markdown table is printed at the end. CPU seconds are
process time on --threads threads.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rnnkit.data.sequences import IGNORE, pad_batch  # noqa: E402
from rnnkit.data.synthetic import ADDING_BASELINE_MSE, make_synthetic  # noqa: E402
from rnnkit.layers.kernels.denormals import flush_denormals  # noqa: E402
from rnnkit.models import SequenceClassifier, SequenceTagger  # noqa: E402
from rnnkit.models.classifier import chrono_init  # noqa: E402

CELLS = {
    "elman": dict(cell="rnn", nonlinearity="tanh"),
    "irnn": dict(cell="irnn"),
    "gru": dict(cell="gru"),
    "lstm": dict(cell="lstm"),
    "peephole": dict(cell="lstm", variant="peephole"),
}
DEFAULT_LENGTHS = {"adding": [50, 100, 200, 500, 1000], "parity": [5, 10, 20, 50], "copy": [10, 20, 50, 100]}


def generate(task: str, rng: np.random.Generator, count: int, length: int, args):
    if task == "copy":
        return make_synthetic("copy", rng, count, length=1, delay=length, symbols=args.symbols, alphabet=args.alphabet)
    min_length = 1 if task == "parity" and args.parity_curriculum else 0
    return make_synthetic(task, rng, count, length=length, min_length=min_length)


def batch_tensors(data):
    p = pad_batch(data, range(len(data)))
    return p.inputs, p.lengths, p.targets


def loss_and_score(task: str, model, x, lengths, y):
    """(mean loss, figure): adding MSE; parity / copy accuracy over the scored items."""
    out, _ = model(x, None, lengths)
    if task == "adding":
        mse = F.mse_loss(out.squeeze(-1), y)
        return mse, float(mse.detach())
    if task == "copy":
        loss = F.cross_entropy(out.flatten(0, 1), y.flatten(), ignore_index=IGNORE)
        real = y != IGNORE
        return loss, float(((out.argmax(-1) == y) & real).sum() / real.sum())
    loss = F.cross_entropy(out, y)
    return loss, float((out.argmax(-1) == y).float().mean())


@torch.no_grad()
def evaluate(task, model, sets):
    model.eval()
    scores, weights = [], []
    for x, lengths, y in sets:
        scores.append(loss_and_score(task, model, x, lengths, y)[1])
        weights.append(len(x))
    model.train()
    return float(np.average(scores, weights=weights))


def solved(task: str, figure: float) -> bool:
    return figure < 0.01 if task == "adding" else figure >= 0.99


def run_one(task: str, cell: str, length: int, args) -> dict:
    torch.manual_seed(args.seed)
    data_rng = np.random.default_rng([args.seed, length, 0])
    sample = generate(task, data_rng, 1, length, args)
    D = sample.input_size
    K = 1 if task == "adding" else (args.alphabet if task == "copy" else 2)
    Model = SequenceTagger if task == "copy" else SequenceClassifier
    kwargs = {} if task == "copy" else {"pooling": "last"}
    model = Model(D, K, hidden_size=args.hidden, **kwargs, **CELLS[cell])
    chrono = args.chrono and CELLS[cell]["cell"] == "lstm"  # the other cells have no such biases
    if chrono:
        chrono_init(model.encoder.rnn, length + (2 * args.symbols if task == "copy" else 0))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    chunks = lambda data: [batch_tensors(data.subset(range(i, min(i + 500, len(data)))))  # noqa: E731
                           for i in range(0, len(data), 500)]
    valid = chunks(generate(task, np.random.default_rng([args.seed, length, 1]), args.valid_size, length, args))
    test = chunks(generate(task, np.random.default_rng([args.seed, length, 2]), args.test_size, length, args))
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    status, step, valid_figure = "budget", 0, math.nan
    for step in range(1, args.budget + 1):
        x, lengths, y = batch_tensors(generate(task, data_rng, args.batch, length, args))
        loss, _ = loss_and_score(task, model, x, lengths, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        if not (torch.isfinite(loss) and torch.isfinite(norm)):
            status = "diverged"
            break
        opt.step()
        if step % args.eval_every == 0 or step == args.budget:
            valid_figure = evaluate(task, model, valid)
            if solved(task, valid_figure):
                status = "solved"
                break
    test_figure = evaluate(task, model, test) if status != "diverged" else math.nan
    return {"task": task, "cell": cell, "length": length, "status": status, "steps": step,
            "valid": valid_figure, "test": test_figure, "solved": status == "solved",
            "cpu_s": round(time.process_time() - start_cpu, 1), "wall_s": round(time.perf_counter() - start_wall, 1),
            "chrono": chrono, "hidden": args.hidden, "batch": args.batch, "lr": args.lr, "budget": args.budget, "seed": args.seed}


def table(rows: list[dict], task: str) -> str:
    lengths = sorted({r["length"] for r in rows})
    for r in rows:  # chrono-initialised LSTMs get rows of their own
        if r.get("chrono") and not r["cell"].endswith("chrono"):
            r["cell"] += " chrono"
    names = [c for c in CELLS] + [c + " chrono" for c in CELLS]
    cells = [c for c in names if any(r["cell"] == c for r in rows)]
    what = {"adding": "test MSE", "parity": "test accuracy", "copy": "test accuracy"}[task]
    head = f"| cell \\ {'delay' if task == 'copy' else 'T'} | " + " | ".join(str(t) for t in lengths) + " |"
    lines = [f"{task}: updates to solve ({what} in brackets); ✗ = not solved in the budget", "",
             head, "|---" * (len(lengths) + 1) + "|"]
    for cell in cells:
        out = []
        for t in lengths:
            r = next((r for r in rows if r["cell"] == cell and r["length"] == t), None)
            if r is None:
                out.append("")
            elif r["status"] == "diverged":
                out.append(f"✗ diverged at {r['steps']}")
            else:
                fig = f"{r['test']:.4f}" if task == "adding" else f"{100 * r['test']:.1f}%"
                out.append(f"✓ {r['steps']} ({fig})" if r["status"] == "solved" else f"✗ ({fig})")
        lines.append(f"| {cell} | " + " | ".join(out) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=["adding", "parity", "copy"])
    p.add_argument("--lengths", type=int, nargs="+", help="T (copy: the delay); default per task")
    p.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    p.add_argument("--budget", type=int, default=3000, help="updates per run at most")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clipping")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--valid-size", type=int, default=500)
    p.add_argument("--test-size", type=int, default=2000)
    p.add_argument("--symbols", type=int, default=5, help="copy: symbols to recall")
    p.add_argument("--alphabet", type=int, default=8, help="copy: alphabet size")
    p.add_argument("--parity-curriculum", action=argparse.BooleanOptionalAction, default=True,
                   help="parity: train and test on lengths uniform in 1..T (default), not all T")
    p.add_argument("--chrono", action="store_true",
                   help="chrono initialisation of the LSTM gate biases (Tallec & Ollivier 2018) instead of "
                        "forget bias 1; marked 'chrono' in the results")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None, help="append each run's result here as a JSON line")
    p.add_argument("--table", type=Path, nargs="+", default=None, metavar="JSONL",
                   help="print the table of runs saved by --json (one or more files) and exit")
    args = p.parse_args(argv)
    if args.table:
        rows = [json.loads(line) for path in args.table for line in path.read_text().splitlines() if line.strip()]
        print(table([r for r in rows if r["task"] == args.task], args.task))
        return 0
    torch.set_num_threads(args.threads)
    lengths = args.lengths or DEFAULT_LENGTHS[args.task]
    if args.task == "adding":
        print(f"adding: always answering 1 scores MSE {ADDING_BASELINE_MSE:.3f}", file=sys.stderr)
    rows = []
    for length in lengths:
        for cell in args.cells:
            with flush_denormals():  # as the Trainer does: a long backward crawls through subnormals
                r = run_one(args.task, cell, length, args)
            rows.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(r) + "\n")
    print(table(rows, args.task))
    return 0


if __name__ == "__main__":
    sys.exit(main())
