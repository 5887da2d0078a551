"""Vocabularies: characters or words <-> integer ids, saved as JSON in the run directory.

- `CharVocab`: every character seen in the training text, in code-point order, after
  the unknown symbol (id 0), which stands for characters the training text never had.
- `WordVocab`: the `size` most frequent words of the training text plus `<unk>` (id 0)
  and `<eol>` (id 1, end of line). Words are `\\w+` runs and single punctuation marks
  (`tokenize_words`); spacing inside a line is not kept, so decoded text is the words
  joined by spaces.

Both encode a string (or pieces of one) to a numpy int array and decode ids back.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np

UNK = "<unk>"
EOL = "<eol>"
FORMAT_VERSION = 1
_WORD = re.compile(r"\w+|[^\w\s]")


class Vocab:
    """Common interface: `encode(text) -> ids`, `decode(ids) -> text`, `__len__`, JSON I/O."""

    kind = ""
    unk_id = 0

    def __len__(self) -> int:
        raise NotImplementedError

    def encode(self, text: str) -> np.ndarray:
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        raise NotImplementedError

    def to_json(self) -> dict:
        raise NotImplementedError

    def save(self, path: str | Path) -> None:
        """Write `to_json()` to `path` (a temporary name, then renamed)."""
        path = Path(path)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(self.to_json(), ensure_ascii=False, indent=0), encoding="utf-8")
        temporary.replace(path)

    def fingerprint(self) -> str:
        """A short stable hash of the vocabulary (part of the encoded-corpus cache key)."""
        import hashlib

        return hashlib.sha256(json.dumps(self.to_json(), ensure_ascii=False).encode()).hexdigest()[:16]

    @property
    def dtype(self):
        """The smallest unsigned integer dtype that holds every id."""
        return np.uint8 if len(self) <= 256 else np.uint16 if len(self) <= 65536 else np.uint32


class CharVocab(Vocab):
    """Characters; id 0 is the unknown symbol, then `symbols` in the given order.

    Encoding goes through a lookup table indexed by code point, so a 10 MB string
    encodes in a few tens of milliseconds.
    """

    kind = "char"

    def __init__(self, symbols: Iterable[str]):
        symbols = list(symbols)
        bad = [s for s in symbols if len(s) != 1]
        if bad:
            raise ValueError(f"a character vocabulary holds single characters, got {bad[:3]!r}")
        if len(set(symbols)) != len(symbols):
            raise ValueError("a character vocabulary must not repeat a character")
        self.symbols = symbols
        self.itos = [UNK] + symbols
        self.stoi = {c: i + 1 for i, c in enumerate(symbols)}
        top = max((ord(c) for c in symbols), default=0) + 1
        self._table = np.zeros(top, dtype=np.int64)  # code point -> id, 0 (unknown) by default
        for c, i in self.stoi.items():
            self._table[ord(c)] = i

    @classmethod
    def build(cls, pieces: Iterable[str], min_count: int = 1) -> "CharVocab":
        """Every character occurring at least `min_count` times, in code-point order."""
        counts: Counter = Counter()
        for piece in pieces:
            counts.update(piece)
        return cls(sorted(c for c, n in counts.items() if n >= min_count))

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> np.ndarray:
        """text -> (len(text),) int64 ids; unseen characters map to 0."""
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        inside = codes < len(self._table)
        return np.where(inside, self._table[np.where(inside, codes, 0)], 0)

    def unknown(self, text: str) -> list[str]:
        """The distinct characters of `text` that are not in the vocabulary."""
        return sorted({c for c in text if c not in self.stoi})

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.token(int(i)) for i in ids)

    def token(self, i: int) -> str:
        """The text of one id (the unknown symbol prints as U+FFFD)."""
        return self.itos[i] if i else "\ufffd"

    def to_json(self) -> dict:
        return {"format": FORMAT_VERSION, "kind": self.kind, "unk": UNK, "symbols": self.symbols}


class WordVocab(Vocab):
    """Words; id 0 `<unk>`, id 1 `<eol>`, then the most frequent words, most frequent first."""

    kind = "word"
    eol_id = 1

    def __init__(self, words: Iterable[str]):
        words = list(words)
        if UNK in words or EOL in words:
            raise ValueError(f"{UNK} and {EOL} are reserved and added by the vocabulary itself")
        if len(set(words)) != len(words):
            raise ValueError("a word vocabulary must not repeat a word")
        self.words = words
        self.itos = [UNK, EOL] + words
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    @classmethod
    def build(cls, pieces: Iterable[str], size: int = 10000, min_count: int = 1) -> "WordVocab":
        """The `size` most frequent words (ties broken alphabetically) seen >= min_count times."""
        if size < 1:
            raise ValueError(f"word vocabulary size must be >= 1, got {size}")
        counts: Counter = Counter()
        for piece in pieces:
            counts.update(_WORD.findall(piece))
        ranked = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        return cls(ranked[:size])

    def __len__(self) -> int:
        return len(self.itos)

    def tokenize(self, text: str) -> list[str]:
        return tokenize_words(text)

    def encode(self, text: str) -> np.ndarray:
        """text -> ids: each line's words then `<eol>` for each newline."""
        get = self.stoi.get
        return np.fromiter((get(w, 0) for w in tokenize_words(text)), dtype=np.int64)

    def unknown(self, text: str) -> list[str]:
        return sorted({w for w in tokenize_words(text) if w not in self.stoi})

    def decode(self, ids: Iterable[int]) -> str:
        out, line_start = [], True
        for i in ids:
            token = self.token(int(i))
            if token == "\n":
                out.append(token)
                line_start = True
            else:
                out.append(token if line_start else " " + token)
                line_start = False
        return "".join(out)

    def token(self, i: int) -> str:
        return "\n" if i == self.eol_id else self.itos[i]

    def to_json(self) -> dict:
        return {"format": FORMAT_VERSION, "kind": self.kind, "unk": UNK, "eol": EOL,
                "words": self.words}


def tokenize_words(text: str) -> list[str]:
    """Words (`\\w+`) and single punctuation marks, with `<eol>` for every newline."""
    tokens = []
    lines = text.split("\n")
    for k, line in enumerate(lines):
        tokens += _WORD.findall(line)
        if k < len(lines) - 1:
            tokens.append(EOL)
    return tokens


def load_vocab(path: str | Path) -> Vocab:
    """Read a vocabulary written by `Vocab.save`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no vocabulary file {str(path)!r}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"vocabulary file {str(path)!r} is not valid JSON: {e}") from None
    return vocab_from_json(data, source=str(path))


def vocab_from_json(data: dict, source: str = "vocabulary") -> Vocab:
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind == "char":
        return CharVocab(data["symbols"])
    if kind == "word":
        return WordVocab(data["words"])
    raise ValueError(f"{source}: unknown vocabulary kind {kind!r}; expected 'char' or 'word'")
