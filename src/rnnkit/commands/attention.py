"""`rnnkit attention RUN_DIR TEXT --plot att.png`: where the decoder looked, for one input.

Decodes TEXT (greedy, or `--beam K`), then runs the decoder teacher-forced on its own
output to read the attention weights a_{t,i} (one row per output token, the end token
included; one column per source token), prints them as a table and draws them as a
heat map with matplotlib. A run trained without attention has no weights to show.
"""
from __future__ import annotations

import os
import sys

NAME = "attention"
HELP = "show and plot the attention weights of a translate run for one input"
EXAMPLES = """examples:
  rnnkit attention runs/numbers-en-fr "seventy-one thousand and eighty" --plot att.png
  rnnkit attention runs/numbers-en-fr "four hundred and twelve" --beam 5 --plot att.png"""


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a translate run directory trained with attention")
    parser.add_argument("text", metavar="TEXT", help="the input")
    parser.add_argument("--plot", metavar="PNG", default=None, help="draw the attention matrix here")
    parser.add_argument("--beam", type=int, default=None, help="decode with beam search of this width (default greedy)")
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best",
                        help="which checkpoint of the run (default: best, else last)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")


def attention_matrix(task, model, text: str, strategy):
    """(source tokens, output tokens with </s>, weights (T, S) as a tensor) for one input."""
    import torch

    from ..data.pairs import BOS_ID, EOS, EOS_ID, tokenize
    from ..decode import decode

    source, lengths, _ = task.encode_texts([text])
    device = next(model.parameters()).device
    source, lengths = source.to(device), lengths.to(device)
    with torch.no_grad():
        hyp = decode(model.decode_step, model.start(source, lengths), 1, strategy, bos=BOS_ID, eos=EOS_ID,
                     max_length=task.meta["max_target_length"], reorder=model.reorder_state)[0][0]
        target_in = torch.tensor([[BOS_ID] + hyp.tokens], device=device)  # (1, T)
        weights = model(source, lengths, target_in).attention[0].cpu()  # (T, S)
    level = task.meta["levels"][0]
    outputs = task.target_vocab.decode(hyp.tokens) + ([EOS] if hyp.finished else [])
    return tokenize(text, level), outputs, weights[: len(outputs)]


def run(args) -> int:
    from ..cli import CliError
    from ..decode import BeamSearch, Greedy
    from ..tasks.base import TaskCommandError
    from ..tasks.translate import require_translate_run

    if args.beam is not None and args.beam < 1:
        raise CliError(f"--beam must be >= 1 (a beam width), got {args.beam}")
    task, model = require_translate_run(args.run_dir, args.checkpoint, args.device)
    if model.attention is None:
        raise CliError(f"{args.run_dir} was trained without attention (model.attention: none): "
                       "there are no attention weights to show")
    strategy = BeamSearch(args.beam) if args.beam else Greedy()
    try:
        sources, outputs, weights = attention_matrix(task, model, args.text, strategy)
    except TaskCommandError as err:
        raise CliError(str(err)) from None
    try:
        width = max(5, *(len(s) for s in sources))
        print(" " * 14 + "".join(f"{s[:width]:>{width + 1}}" for s in sources))
        for token, row in zip(outputs, weights.tolist()):
            print(f"{token[:13]:<14}" + "".join(f"{w:{width + 1}.2f}" for w in row))
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if args.plot:
        try:
            draw_attention(sources, outputs, weights, args.plot, title=args.text)
        except ImportError:
            raise CliError("--plot needs matplotlib: pip install 'rnnkit[translate]'") from None
        print(f"wrote {args.plot}")
    return 0


def draw_attention(sources, outputs, weights, path, title: str = "") -> None:
    """A heat map of weights (T, S): output tokens down, source tokens across."""
    import textwrap
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(3.0, 1.0 + 0.45 * len(sources)), 1.0 + 0.4 * len(outputs)))
    ax.imshow(weights.numpy(), cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(sources)), [s.replace("\n", "\\n") for s in sources], rotation=60, ha="right")
    ax.set_yticks(range(len(outputs)), outputs)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    if title:
        ax.set_title(textwrap.fill(title, width=max(20, 6 * len(sources))), fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
