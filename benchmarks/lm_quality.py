"""Character LMs on the stdlib test split: LSTM recipes against Kneser-Ney n-grams and xz.

    python benchmarks/lm_quality.py                                  # n-grams, xz, train + score the main recipe
    python benchmarks/lm_quality.py --run runs/charlm-stdlib         # score a run already trained
    python benchmarks/lm_quality.py --recipe configs/charlm-stdlib.yaml --recipe my-60min.yaml
    python benchmarks/lm_quality.py --no-lstm --orders 2,3,4,5,6,7,8
    python benchmarks/lm_quality.py --run runs/charlm-stdlib-60min --ngram-mix 8 --no-xz --orders 8

Every model sees the same split: the `stdlib` corpus of `rnnkit.data` (this Python's
standard library source, tests left out, split 90/5/5 by file with seed 0); the
n-grams use the character vocabulary of its training split, a run its own (a subword
run is scored in bits per character of the test text: its total bits over the
characters).

- n-gram: `rnnkit.models.KneserNeyLM` (interpolated modified Kneser-Ney), fitted on
  the training split, bits/char over every test character.
- xz: `xz -9e` of the test text alone (8 · compressed bytes / characters), and of the
  training text followed by the test text minus the training text alone (xz having
  seen the training text, like the models).
- LSTM: each `--recipe` is trained with `rnnkit train` (run dir under
  benchmarks/out/), each `--run` is taken as it is; both are scored with `rnnkit
  eval`'s code on the test split (the recurrent state carried over the whole split).
  With `--dynamic`, a second row: the same model scored with dynamic evaluation
  (rnnkit.train.dynamic: each chunk is scored, then learnt from), the adaptive
  counterpart of the "xz having seen the training text" row. With `--ngram-mix K`,
  rows for the model interpolated with the Kneser-Ney K-gram (`rnnkit eval --ngram K`:
  the mixture weight fitted on the validation split), statically and, with
  `--dynamic`, adapting: a combination of the two models, not the LSTM alone.

Prints a markdown table and writes it to benchmarks/out/lm_quality.md.
"""
from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"


def xz_bits(data: bytes) -> int:
    """Size in bits of `xz -9e` of data."""
    if shutil.which("xz") is None:
        raise SystemExit("xz is not installed (apt-get install xz-utils), or pass --no-xz")
    result = subprocess.run(["xz", "-9e", "-c", "-T1"], input=data, capture_output=True, check=True)
    return 8 * len(result.stdout)


def score_run(run_dir: Path, dynamic: argparse.Namespace | None = None) -> tuple[dict, dict]:
    """Test-split metrics of a trained charlm run (statically, or as `dynamic` asks: `rnnkit
    eval`'s --dynamic and --ngram options), and its trainer state."""
    from rnnkit.cli import load_run
    from rnnkit.train.checkpoint import read_state
    from rnnkit.train.device import resolve_precision

    task, model, config, ckpt = load_run(run_dir)
    task.prepare_data()
    device = next(model.parameters()).device
    args = dynamic or argparse.Namespace(dynamic=False)
    metrics = task.evaluate_split(model, "test", args, device=device,
                                  precision=resolve_precision(config.trainer.precision, device))
    return metrics, {**read_state(ckpt)["train"], "level": task.vocab.kind}


def train_recipe(recipe: str, overrides: list[str]) -> tuple[Path, float]:
    """Train a recipe into benchmarks/out/runs/<name>; returns the run dir and wall seconds."""
    from rnnkit.cli import main as rnnkit

    run_dir = OUT / "runs" / Path(recipe).stem
    start = time.perf_counter()
    status = rnnkit(["train", recipe, f"run.dir={run_dir}", "run.overwrite=true", *overrides])
    if status != 0:
        raise SystemExit(f"training {recipe} failed (exit {status})")
    return run_dir, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", default="3,4,5,6,7,8", help="n-gram orders (comma-separated)")
    parser.add_argument("--recipe", action="append", default=None,
                        help="LSTM recipe to train and score (repeatable; default configs/charlm-stdlib.yaml)")
    parser.add_argument("--run", action="append", default=[], help="a trained charlm run to score (repeatable)")
    parser.add_argument("--no-lstm", action="store_true", help="n-grams and xz only")
    parser.add_argument("--no-xz", action="store_true")
    parser.add_argument("--dynamic", action="store_true",
                        help="also score each LSTM with dynamic evaluation (rnnkit eval --dynamic)")
    parser.add_argument("--dynamic-rule", choices=("rms", "sgd"), default="rms")
    parser.add_argument("--dynamic-lr", type=float, default=2e-5)
    parser.add_argument("--dynamic-decay", type=float, default=0.0)
    parser.add_argument("--dynamic-rms-batches", type=int, default=50)
    parser.add_argument("--dynamic-rms-floor", type=float, default=0.0,
                        help="as rnnkit eval's (0.1 for a subword run)")
    parser.add_argument("--streams", type=int, default=0, help="dynamic evaluation's parallel streams")
    parser.add_argument("--bptt", type=int, default=0, help="dynamic evaluation's chunk length")
    parser.add_argument("--ngram-mix", type=int, default=0, metavar="K",
                        help="also score each LSTM mixed with the Kneser-Ney K-gram (rnnkit eval --ngram K)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides for the recipes (e.g. run.threads=2)")
    args = parser.parse_args(argv)

    from rnnkit.data import CharVocab, encode_split, load_corpus
    from rnnkit.models import KneserNeyLM

    corpus = load_corpus("stdlib")
    vocab = CharVocab.build(corpus.blocks("train"))
    train, test = encode_split(corpus, "train", vocab), encode_split(corpus, "test", vocab)
    print(f"{corpus.describe()}; vocab {len(vocab)}; test {len(test):,} characters", file=sys.stderr)
    rows = []  # (model, bits/char, note)

    for order in [int(k) for k in args.orders.split(",") if k]:
        cpu = time.process_time()
        model = KneserNeyLM(order, len(vocab)).fit(train)
        cpu = time.process_time() - cpu
        start = time.perf_counter()
        bits = model.bits_per_token(test)
        rows.append((f"Kneser-Ney order {order}", bits,
                     f"fit {model.fit_seconds:.1f} s wall / {cpu:.1f} s CPU, "
                     f"score {time.perf_counter() - start:.1f} s, {sum(model.num_ngrams()):,} n-grams"))
        print(f"  {rows[-1]}", file=sys.stderr)
        del model

    if not args.no_xz:
        test_bytes, train_bytes = corpus.text("test").encode(), corpus.text("train").encode()
        rows.append(("xz -9e, test text alone", xz_bits(test_bytes) / len(test), ""))
        rows.append(("xz -9e, having seen the training text",
                     (xz_bits(train_bytes + test_bytes) - xz_bits(train_bytes)) / len(test),
                     "xz(train + test) - xz(train)"))
        print(f"  {rows[-2]}\n  {rows[-1]}", file=sys.stderr)

    runs = [(Path(r), None) for r in args.run]
    if not args.no_lstm and not runs:
        for recipe in args.recipe or [str(ROOT / "configs" / "charlm-stdlib.yaml")]:
            runs.append(train_recipe(recipe, args.overrides))
    dynamic = argparse.Namespace(dynamic=True, streams=args.streams, bptt=args.bptt,
                                 dynamic_rule=args.dynamic_rule, dynamic_lr=args.dynamic_lr,
                                 dynamic_decay=args.dynamic_decay, dynamic_rms_batches=args.dynamic_rms_batches,
                                 dynamic_rms_floor=args.dynamic_rms_floor)
    dynamic_note = (f"rule {args.dynamic_rule}, lr {args.dynamic_lr:g}, decay {args.dynamic_decay:g}, "
                    f"streams {args.streams or 'as trained'}, bptt {args.bptt or 'data.eval_bptt'}")
    scorings = [("", argparse.Namespace(dynamic=False), "")]
    if args.dynamic:
        scorings.append((", dynamic evaluation", dynamic, dynamic_note))
    if args.ngram_mix:
        mix = f", mixed with Kneser-Ney order {args.ngram_mix}"
        scorings.append((mix, argparse.Namespace(dynamic=False, streams=0, bptt=0,
                                                 ngram=args.ngram_mix), ""))
        if args.dynamic:
            scorings.append((mix + ", dynamic evaluation",
                             argparse.Namespace(**vars(dynamic), ngram=args.ngram_mix), dynamic_note))
    for run_dir, wall in runs:
        for label, how, note in scorings:
            start = time.perf_counter()
            metrics, state = score_run(run_dir, how)
            if not label:
                unit = "characters" if state["level"] == "char" else f"{state['level']} tokens"
                note = (f"{state['step']} steps, {state['items_seen']:,} training {unit}, "
                        f"{state['train_time_s'] / 60:.1f} min of training")
                if wall is not None:
                    note += f", {wall / 60:.1f} min wall for the whole command"
            else:
                parts = [note] if note else []
                if "ngram_weight" in metrics:
                    parts.append(f"model weight {metrics['ngram_weight']:.3f} (fitted on valid)")
                note = "; ".join(parts + [f"{(time.perf_counter() - start) / 60:.1f} min"])
            rows.append((f"LSTM run {run_dir.name}{label}", metrics["bits_per_char"], note))

    best_ngram = min((b for name, b, _ in rows if name.startswith("Kneser")), default=math.nan)
    lines = ["| model | test bits/char | vs best n-gram | notes |", "| --- | --- | --- | --- |"]
    for name, bits, note in rows:
        lines.append(f"| {name} | {bits:.3f} | {100 * (bits / best_ngram - 1):+.1f}% | {note} |")
    table = "\n".join(lines)
    print(table)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "lm_quality.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
