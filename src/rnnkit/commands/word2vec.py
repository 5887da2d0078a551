"""`rnnkit word2vec`: train word2vec (gensim) on a corpus's training split, tokenised as the
word-level language model tokenises it, and write the vectors in word2vec format for
`data.embeddings` (rnnkit.inspect.pretrained)."""
from __future__ import annotations

from pathlib import Path

NAME = "word2vec"
HELP = "train word2vec vectors (gensim) on a corpus, for a word-level model to start from"
EXAMPLES = """examples:
  rnnkit word2vec --out vectors.txt                              # the stdlib's training split
  rnnkit word2vec --source path --path notes/ --glob '*.txt' --out notes.bin --binary
  rnnkit train configs/wordlm-stdlib.yaml data.embeddings=vectors.txt model.tie_weights=false
  rnnkit train configs/wordlm-stdlib.yaml data.embeddings=frozen:vectors.txt model.tie_weights=false

Tokens are the word model's (\\w+ runs, single punctuation marks, <eol> per line), and
only the training split of the same file-level split is read (data.split, split_seed),
so validation and test text never leaks into the vectors. --size must equal the
model's embedding size (model.embedding_size, default model.hidden_size)."""


def add_arguments(parser) -> None:
    parser.add_argument("--source", choices=["stdlib", "path", "bible"], default="stdlib",
                        help="corpus (default stdlib)")
    parser.add_argument("--path", default="", help="--source path: a text file or a directory")
    parser.add_argument("--glob", default="*", help="--source path with a directory: file names to read")
    parser.add_argument("--out", required=True, metavar="FILE", help="the vectors (word2vec text format; .bin binary)")
    parser.add_argument("--binary", action="store_true", help="write the binary format (default: by --out suffix)")
    parser.add_argument("--size", type=int, default=256, help="dimensions (default 256, the word LM's hidden size)")
    parser.add_argument("--window", type=int, default=5, help="context window (default 5)")
    parser.add_argument("--min-count", type=int, default=5, help="ignore rarer words (default 5)")
    parser.add_argument("--epochs", type=int, default=5, help="passes over the corpus (default 5)")
    parser.add_argument("--sg", action="store_true", help="skip-gram (default: CBOW)")
    parser.add_argument("--max-files", type=int, default=0, help="read only the first N training files (0: all)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the corpus split (data.split_seed)")
    parser.add_argument("--workers", type=int, default=1, help="gensim threads (default 1; 1 is reproducible)")
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    from ..cli import CliError
    from ..data import CorpusError, load_corpus
    from ..data.vocab import tokenize_words

    for name in ("size", "window", "min_count", "epochs", "workers"):
        if getattr(args, name) < 1:
            raise CliError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.source == "path" and not args.path:
        raise CliError("--source path needs --path FILE_OR_DIRECTORY")
    try:
        corpus = load_corpus(args.source, args.path or None, seed=args.split_seed, glob=args.glob,
                             max_files=args.max_files)
    except CorpusError as err:
        raise CliError(f"--source {args.source}: {err}") from None
    sentences = []
    for document in corpus.documents("train"):
        tokens = tokenize_words("".join(document.blocks(corpus.errors)))
        sentences += [tokens[i:i + 1000] for i in range(0, len(tokens), 1000)]  # gensim's sentence limit
    words = sum(len(s) for s in sentences)
    if not words:
        raise CliError(f"--source {args.source}: the training split has no words")
    from gensim.models import Word2Vec

    model = Word2Vec(sentences, vector_size=args.size, window=args.window, min_count=args.min_count,
                     epochs=args.epochs, sg=int(args.sg), workers=args.workers, seed=args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    binary = args.binary or out.suffix == ".bin"
    model.wv.save_word2vec_format(str(out), binary=binary)
    print(f"{words} training tokens in {len(corpus.documents('train'))} files; {len(model.wv)} words "
          f"with >= {args.min_count} occurrences, {args.size} dimensions")
    print(f"wrote {out}")
    return 0
