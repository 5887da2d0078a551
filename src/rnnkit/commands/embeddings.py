"""`rnnkit embeddings`: a trained model's token embeddings: cosine nearest neighbours and a
labelled 2-D map of the most frequent tokens (rnnkit.inspect.embeddings)."""
from __future__ import annotations

from pathlib import Path

NAME = "embeddings"
HELP = "nearest neighbours of a token in a model's embedding, and a 2-D PCA/t-SNE map of the frequent tokens"
EXAMPLES = """examples:
  rnnkit embeddings runs/wordlm-stdlib --neighbours self --neighbours return
  rnnkit embeddings runs/wordlm-stdlib --plot emb.png --count 150 --method tsne
  rnnkit embeddings runs/charlm-stdlib --neighbours a --plot chars.png"""


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run whose model has an embedding (charlm, word or char)")
    parser.add_argument("--neighbours", "--neighbors", action="append", default=[], metavar="TOKEN",
                        help="print the nearest tokens by cosine similarity; repeatable")
    parser.add_argument("-k", type=int, default=10, help="neighbours to print (default 10)")
    parser.add_argument("--plot", metavar="PNG", help="draw the most frequent tokens in 2-D here")
    parser.add_argument("--count", type=int, default=150, help="tokens on the map (default 150)")
    parser.add_argument("--method", choices=["pca", "tsne"], default="pca", help="2-D projection (default pca)")
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best")


def run(args) -> int:
    from ..cli import CliError, load_run
    from ..inspect.embeddings import embedding_matrix, nearest, plot_embeddings

    if not args.neighbours and not args.plot:
        raise CliError("give --neighbours TOKEN and/or --plot PNG")
    if args.k < 1 or args.count < 3:
        raise CliError(f"-k must be >= 1 and --count >= 3, got -k {args.k}, --count {args.count}")
    task, model, config, ckpt = load_run(args.run_dir, args.checkpoint, "cpu")
    vocab = getattr(task, "vocab", None)
    if vocab is None:
        raise CliError(f"{args.run_dir}: task {config.task!r} has no vocabulary; embeddings needs a token model")
    try:
        matrix = embedding_matrix(model)
    except ValueError as err:
        raise CliError(f"{args.run_dir}: {err}") from None
    for token in args.neighbours:
        try:
            found = nearest(matrix, vocab, token, args.k)
        except KeyError as err:
            raise CliError(f"--neighbours: {err.args[0]}") from None
        shown = {"\n": "\\n", " ": "' '"}
        print(f"nearest to {shown.get(token, token)} (cosine):  " +
              "  ".join(f"{shown.get(t, t)} {c:.3f}" for t, c in found))
    if args.plot:
        path = Path(args.plot)
        path.parent.mkdir(parents=True, exist_ok=True)
        counts = None
        if vocab.kind == "char":  # a character vocabulary is in code-point order: count the training text
            import numpy as np

            task.prepare_data()
            counts = np.bincount(task.tokens("train").numpy().astype(np.int64), minlength=len(vocab))
        plot_embeddings(matrix, vocab, path, args.count, args.method, counts=counts,
                        title=f"{Path(args.run_dir).name}: {min(args.count, len(vocab))} most frequent "
                              f"{vocab.kind}s, {args.method.upper()} of the {matrix.shape[1]}-d embedding")
        print(f"wrote {path}")
    return 0
