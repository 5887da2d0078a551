"""Pretrained word vectors (word2vec text or binary format, read with gensim's
KeyedVectors) into a model's embedding layer, frozen or fine-tuned, with a report of
how much of the vocabulary they cover.

    vectors = read_word2vec("vectors.txt")                  # .bin: binary format
    coverage = init_embedding(model.embedding, vocab, vectors, freeze=True)
    print(coverage)      # 8123 of 10002 words (81.2%) have a pretrained vector; missing: ...

In a recipe: `model.pretrained: vectors.txt` (fine-tuned) or `frozen:vectors.txt`
(rnnkit.tasks.charlm). `rnnkit word2vec` trains such vectors on a corpus.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.vocab import Vocab

FROZEN = "frozen:"


@dataclass
class Coverage:
    """How many vocabulary words got a pretrained vector."""

    found: int
    total: int
    source: str
    missing: list[str] = field(default_factory=list)

    @property
    def fraction(self) -> float:
        return self.found / self.total if self.total else 0.0

    def __str__(self) -> str:
        text = (f"{self.source}: {self.found} of {self.total} vocabulary words ({100 * self.fraction:.1f}%) "
                "have a pretrained vector")
        if self.missing:
            more = " ..." if len(self.missing) > 12 else ""
            text += "; missing (kept random): " + " ".join(self.missing[:12]) + more
        return text


def read_word2vec(path: str | Path, binary: bool | None = None):
    """gensim KeyedVectors from a word2vec file; binary defaults to a `.bin` suffix."""
    from gensim.models import KeyedVectors

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained vectors {path}: no such file")
    binary = path.suffix == ".bin" if binary is None else binary
    try:
        return KeyedVectors.load_word2vec_format(str(path), binary=binary)
    except (ValueError, UnicodeDecodeError, EOFError) as err:
        kind = "binary" if binary else "text"
        raise ValueError(f"pretrained vectors {path}: not a word2vec {kind} file ({err})") from None


def init_embedding(embedding: nn.Embedding, vocab: Vocab, vectors, freeze: bool = False,
                   source: str = "pretrained vectors") -> Coverage:
    """Copy the vector of every vocabulary token found in `vectors` into `embedding`
    (rows of tokens without one keep their initial values); freeze: no gradient.

    embedding (V, E) must have E = vectors.vector_size."""
    V, E = embedding.weight.shape
    if vectors.vector_size != E:
        raise ValueError(f"{source}: vectors of {vectors.vector_size} dimensions, the embedding has {E} "
                         f"(set model.embedding_size to {vectors.vector_size})")
    if V != len(vocab):
        raise ValueError(f"the embedding has {V} rows, the vocabulary {len(vocab)} tokens")
    found, missing = [], []
    for i in range(len(vocab)):
        word = vocab.itos[i] if hasattr(vocab, "itos") else vocab.token(i)
        (found if word in vectors.key_to_index else missing).append((i, word))
    with torch.no_grad():
        if found:
            rows = torch.tensor([i for i, _ in found])
            values = torch.from_numpy(np.stack([vectors[w] for _, w in found]))
            embedding.weight[rows] = values.to(embedding.weight.dtype)
    embedding.weight.requires_grad_(not freeze)
    return Coverage(len(found), len(vocab), source, [w for _, w in missing])


def apply_pretrained(model: nn.Module, vocab: Vocab, spec: str, load: bool = True) -> Coverage | None:
    """`spec` = PATH or frozen:PATH (the recipe's model.pretrained) applied to `model.embedding`.

    load=False (a run being resumed or evaluated, whose checkpoint holds the weights)
    only freezes; the file is not read."""
    freeze = spec.startswith(FROZEN)
    path = spec[len(FROZEN):] if freeze else spec
    if freeze and getattr(model, "tie_weights", False):
        raise ValueError(f"model.pretrained={spec!r} freezes the embedding, which tie_weights shares with "
                         "the output layer; set model.tie_weights=false or drop 'frozen:'")
    coverage = None
    if load:
        coverage = init_embedding(model.embedding, vocab, read_word2vec(path), freeze=freeze, source=path)
    else:
        model.embedding.weight.requires_grad_(not freeze)
    return coverage
