"""`rnnkit translate RUN_DIR TEXT...`: decode new inputs with a trained `translate` run.

Greedy by default; `--beam K` runs beam search and `--nbest N` prints its N best
hypotheses with their log-probabilities; `--temperature`/`--top-k` sample instead.
Tokens the run never saw in training are mapped to <unk> and named on stderr; an empty
input, one longer than the run's data.max_source_length, or a beam width below 1 is an
error.
"""
from __future__ import annotations

import argparse
import os
import sys

NAME = "translate"
HELP = "translate new inputs with a trained encoder-decoder run (greedy, sampling or beam search)"
EXAMPLES = """examples:
  rnnkit translate runs/numbers-en-fr "four hundred and twelve"
  rnnkit translate runs/numbers-en-fr "four hundred and twelve" --beam 5 --nbest 3
  rnnkit translate runs/numbers-en-fr "seventy-one" "ninety-nine" --beam 5 --length-penalty 1.0
  rnnkit translate runs/numbers-en-fr "eighty" --temperature 0.8 --seed 1
  echo "twelve" | rnnkit translate runs/numbers-en-fr -        # one input per line from stdin"""


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a translate run directory (or one checkpoint in it)")
    parser.add_argument("texts", nargs="+", metavar="TEXT", help="inputs to translate ('-': read lines from stdin)")
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best",
                        help="which checkpoint of the run (default: best, else last)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--beam", type=_int, default=None, help="beam width K >= 1 (default: greedy)")
    parser.add_argument("--nbest", type=_int, default=1, help="with --beam: print the N best (N <= K)")
    parser.add_argument("--length-penalty", type=float, default=0.0,
                        help="with --beam: rank by log p / |y|^alpha (default 0: raw log p)")
    parser.add_argument("--temperature", type=float, default=None, help="sample at this temperature (> 0)")
    parser.add_argument("--top-k", type=_int, default=0, help="when sampling: only among the k best tokens")
    parser.add_argument("--seed", type=int, default=None, help="seed for a reproducible sample")


def make_strategy(args):
    """Greedy, Sample or BeamSearch from the options; bad combinations are usage errors."""
    from ..cli import CliError
    from ..decode import BeamSearch, Greedy, Sample

    if args.beam is not None and args.beam < 1:
        raise CliError(f"--beam must be >= 1 (a beam width), got {args.beam}")
    if args.nbest < 1:
        raise CliError(f"--nbest must be >= 1, got {args.nbest}")
    if args.beam is not None:
        if args.temperature is not None:
            raise CliError("--temperature samples; it cannot be combined with --beam")
        if args.nbest > args.beam:
            raise CliError(f"--nbest {args.nbest} is more than the beam keeps (--beam {args.beam})")
        try:
            return BeamSearch(args.beam, length_penalty=args.length_penalty, n_best=args.nbest)
        except ValueError as err:
            raise CliError(str(err)) from None
    if args.nbest > 1:
        raise CliError("--nbest needs --beam K (greedy and sampling give one hypothesis)")
    if args.temperature is not None:
        if not args.temperature > 0:
            raise CliError(f"--temperature must be > 0, got {args.temperature}")
        return Sample(args.temperature, args.top_k, args.seed)
    return Greedy()


def read_texts(texts: list[str]) -> list[str]:
    if texts == ["-"]:
        return [line.rstrip("\n") for line in sys.stdin]
    return texts


def run(args) -> int:
    from ..cli import CliError
    from ..tasks.base import TaskCommandError
    from ..tasks.translate import require_translate_run

    strategy = make_strategy(args)  # before loading anything: a bad flag fails at once
    texts = read_texts(args.texts)
    if not texts:
        raise CliError("no input: give TEXT arguments or lines on stdin")
    task, model = require_translate_run(args.run_dir, args.checkpoint, args.device)
    try:
        _, _, unknown = task.encode_texts(texts)
        if unknown:
            print(f"warning: {len(unknown)} token(s) not in this run's vocabulary, read as <unk>: "
                  + ", ".join(repr(u) for u in unknown[:10]), file=sys.stderr)
        results = task.translate(model, texts, strategy)
    except TaskCommandError as err:
        raise CliError(str(err)) from None
    try:
        for text, hyps in zip(texts, results):
            if len(hyps) == 1 and len(texts) == 1:
                print(hyps[0][0])
                continue
            print(f"{text}")
            for rank, (out, log_prob, finished) in enumerate(hyps, 1):
                note = "" if finished else "  (no end token: cut at the length limit)"
                print(f"  {rank}. {out}    log p = {log_prob:.4f}{note}")
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
