"""Paired sequences (source -> target) for encoder-decoders: tokens, vocabulary, batches.

- `tokenize(text, level)` / `detokenize(tokens, level)`: words (`\\w+` runs and single
  punctuation marks, so "quatre-vingt-dix" is quatre - vingt - dix) or characters;
  detokenize(tokenize(t)) == t for the texts used here (no space before `-` `,` `.`,
  none after `-`; checked by the tests on every language used).
- `PairVocab`: <pad> 0, <unk> 1, <s> 2, </s> 3, then the tokens of the training split.
- `PairSet`: source and target token lists with the text they came from.
- `PairBatches`: padded (source, lengths, target in, target out) batches, shuffled per epoch.
- `make_addition`, `make_reversal`: short sanity tasks ("12+345" -> "357"; "abc" -> "cba").
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
SPECIALS = (PAD, UNK, BOS, EOS)
IGNORE = -100  # target id ignored by the loss (padding)
_WORD = re.compile(r"\w+|[^\w\s]")
_NO_SPACE_BEFORE = {"-", ",", "."}


class PairDataError(ValueError):
    """Bad paired data or input text (empty, too long, unknown tokens)."""


def tokenize(text: str, level: str) -> list[str]:
    """Tokens of `text`: level "word" (words and punctuation marks) or "char" (characters)."""
    if level == "char":
        return list(text)
    if level == "word":
        return _WORD.findall(text)
    raise ValueError(f"unknown token level {level!r}: expected 'word' or 'char'")


def detokenize(tokens: Sequence[str], level: str) -> str:
    """The text of `tokens` (inverse of `tokenize` for number words and programs' outputs)."""
    if level == "char":
        return "".join(tokens)
    out = []
    for i, token in enumerate(tokens):
        if i and token not in _NO_SPACE_BEFORE and tokens[i - 1] != "-":
            out.append(" ")
        out.append(token)
    return "".join(out)


class PairVocab:
    """Token <-> id with the four specials first (<pad> 0, <unk> 1, <s> 2, </s> 3)."""

    def __init__(self, tokens: Iterable[str]):
        tokens = list(tokens)
        clash = [t for t in tokens if t in SPECIALS]
        if clash:
            raise ValueError(f"{clash[0]!r} is reserved for the vocabulary's own special tokens")
        self.itos = list(SPECIALS) + tokens
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]]) -> "PairVocab":
        """Every token of `sequences`, sorted."""
        return cls(sorted({t for seq in sequences for t in seq}))

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return [self.stoi.get(t, UNK_ID) for t in tokens]

    def unknown(self, tokens: Sequence[str]) -> list[str]:
        """The distinct tokens not in the vocabulary, in order of appearance."""
        return list(dict.fromkeys(t for t in tokens if t not in self.stoi))

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens of `ids`, stopping at </s>; <pad> and <s> are left out."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i not in (PAD_ID, BOS_ID):
                out.append(self.itos[i])
        return out

    def to_json(self) -> dict:
        return {"specials": list(SPECIALS), "tokens": self.itos[len(SPECIALS):]}

    @classmethod
    def from_json(cls, data: dict, source: str = "vocabulary") -> "PairVocab":
        if not isinstance(data, dict) or data.get("specials") != list(SPECIALS) or "tokens" not in data:
            raise ValueError(f"{source}: not a paired-sequence vocabulary (expected specials {list(SPECIALS)})")
        return cls(data["tokens"])


@dataclass
class PairSet:
    """Parallel lists: source tokens, target tokens, and the texts they were made from."""

    sources: list[list[str]]
    targets: list[list[str]]
    source_texts: list[str]
    target_texts: list[str]

    def __len__(self) -> int:
        return len(self.sources)

    @classmethod
    def from_texts(cls, sources: Sequence[str], targets: Sequence[str], level_source: str,
                   level_target: str) -> "PairSet":
        return cls([tokenize(s, level_source) for s in sources], [tokenize(t, level_target) for t in targets],
                   list(sources), list(targets))

    def subset(self, index: Sequence[int]) -> "PairSet":
        return PairSet([self.sources[i] for i in index], [self.targets[i] for i in index],
                       [self.source_texts[i] for i in index], [self.target_texts[i] for i in index])


@dataclass
class PairBatch:
    """source (N, S) ids, lengths (N,), target_in (N, T) <s> y_1.., target_out (N, T) y_1.. </s> (IGNORE padding)."""

    source: torch.Tensor
    lengths: torch.Tensor
    target_in: torch.Tensor
    target_out: torch.Tensor
    index: list[int]


def pad_sources(ids: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, S) padded ids and (N,) lengths of id lists, each at least one long."""
    lengths = torch.tensor([len(s) for s in ids], dtype=torch.long)
    out = torch.full((len(ids), int(lengths.max())), PAD_ID, dtype=torch.long)
    for n, s in enumerate(ids):
        out[n, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out, lengths


def make_batch(data: PairSet, index: Sequence[int], source_vocab: PairVocab, target_vocab: PairVocab) -> PairBatch:
    source, lengths = pad_sources([source_vocab.encode(data.sources[i]) for i in index])
    targets = [target_vocab.encode(data.targets[i]) for i in index]
    T = max(len(t) for t in targets) + 1
    target_in = torch.full((len(index), T), PAD_ID, dtype=torch.long)
    target_out = torch.full((len(index), T), IGNORE, dtype=torch.long)
    for n, t in enumerate(targets):
        target_in[n, : len(t) + 1] = torch.tensor([BOS_ID] + t)
        target_out[n, : len(t) + 1] = torch.tensor(t + [EOS_ID])
    return PairBatch(source, lengths, target_in, target_out, list(index))


class PairBatches:
    """Batches of `data` in order, or shuffled by `generator` (a torch.Generator); len() is the count."""

    def __init__(self, data: PairSet, batch_size: int, source_vocab: PairVocab, target_vocab: PairVocab,
                 generator: torch.Generator | None = None):
        self.data, self.batch_size = data, batch_size
        self.source_vocab, self.target_vocab = source_vocab, target_vocab
        self.generator = generator

    def __len__(self) -> int:
        return (len(self.data) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        n = len(self.data)
        order = torch.randperm(n, generator=self.generator).tolist() if self.generator is not None else range(n)
        order = list(order)
        for start in range(0, n, self.batch_size):
            yield make_batch(self.data, order[start: start + self.batch_size], self.source_vocab, self.target_vocab)


# ---------------------------------------------------------------------------- sanity tasks


def make_addition(size: int, digits: int, seed: int) -> PairSet:
    """`size` problems "a+b" -> "a+b's digits", a and b with 1..`digits` digits (characters)."""
    rng = np.random.default_rng(seed)
    sources, targets = [], []
    for _ in range(size):
        a, b = (int(rng.integers(0, 10 ** int(rng.integers(1, digits + 1)))) for _ in range(2))
        sources.append(f"{a}+{b}")
        targets.append(str(a + b))
    return PairSet.from_texts(sources, targets, "char", "char")


def make_reversal(size: int, min_length: int, max_length: int, alphabet: int, seed: int) -> PairSet:
    """`size` strings of `alphabet` lowercase letters, lengths min..max, -> the string reversed."""
    if not 1 <= alphabet <= 26:
        raise ValueError(f"alphabet must be 1..26 letters, got {alphabet}")
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"[:alphabet]))
    sources = ["".join(rng.choice(letters, int(rng.integers(min_length, max_length + 1)))) for _ in range(size)]
    return PairSet.from_texts(sources, [s[::-1] for s in sources], "char", "char")


def save_vocabs(path: Path, source: PairVocab, target: PairVocab, meta: dict) -> None:
    """Both vocabularies and `meta` (keys other than "source" and "target") as one JSON file."""
    if {"source", "target"} & set(meta):
        raise ValueError("meta keys 'source' and 'target' are the vocabularies' own")
    data = {"source": source.to_json(), "target": target.to_json(), **meta}
    path.write_text(json.dumps(data, ensure_ascii=False, indent=0), encoding="utf-8")


def load_vocabs(path: Path) -> tuple[PairVocab, PairVocab, dict]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    meta = {k: v for k, v in data.items() if k not in ("source", "target")}
    return (PairVocab.from_json(data.get("source"), f"{path} (source)"),
            PairVocab.from_json(data.get("target"), f"{path} (target)"), meta)
