"""Vocabularies: characters or words <-> integer ids, saved as JSON in the run directory.

- `CharVocab`: every character seen in the training text, in code-point order, after
  the unknown symbol (id 0), which stands for characters the training text never had.
- `WordVocab`: the `size` most frequent words of the training text plus `<unk>` (id 0)
  and `<eol>` (id 1, end of line). Words are `\\w+` runs and single punctuation marks
  (`tokenize_words`); spacing inside a line is not kept, so decoded text is the words
  joined by spaces.
- `SubwordVocab`: byte-pair encoding (Sennrich et al. 2016) over characters: the
  training text's characters, then pieces made by merging the most frequent adjacent
  pair, `size` tokens in all. Lossless (decoding gives the text back, spaces and all),
  and every text the character vocabulary can spell has an encoding, so a subword
  model's loss converts exactly to bits per character of the text.

Both encode a string (or pieces of one) to a numpy int array and decode ids back.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

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
    if kind == "subword":
        if data.get("pattern") != SUBWORD_PATTERN:
            raise ValueError(f"{source}: this subword vocabulary was made with another pre-tokenizer pattern "
                             f"({data.get('pattern')!r}); this rnnkit splits with {SUBWORD_PATTERN!r}")
        return SubwordVocab(data["symbols"], [tuple(m) for m in data["merges"]])
    raise ValueError(f"{source}: unknown vocabulary kind {kind!r}; expected 'char', 'word' or 'subword'")


# Pre-tokenizer of the subword vocabulary: merges never cross these pieces' borders.
# A letter (or `_`) run, a digit run or a punctuation run, each with at most one leading
# space; a whitespace run keeps its last space for the word after it, so a newline and
# the next line's indentation become one piece ("\n   " then " def").
SUBWORD_PATTERN = r" ?[^\W\d]+| ?\d+| ?[^\s\w]+|\s+(?!\S)|\s+"
_PIECE = re.compile(SUBWORD_PATTERN)


def whole_pieces(blocks: Iterable[str]) -> Iterator[str]:
    """The concatenated `blocks` re-cut so that no `SUBWORD_PATTERN` piece spans a cut:
    each cut is just before a newline that follows a non-space character, a border
    every split of the whole text has. Pre-tokenizing the parts gives the whole's pieces."""
    carry = ""
    for block in blocks:
        text = carry + block
        cut = _safe_cut(text)
        carry = text[cut:]
        if cut:
            yield text[:cut]
    if carry:
        yield carry


def _safe_cut(text: str) -> int:
    at = text.rfind("\n")
    while at > 0 and text[at - 1].isspace():
        at = text.rfind("\n", 0, at)
    return max(at, 0)


class SubwordVocab(Vocab):
    """Byte-pair encoding over characters: id 0 unknown, ids 1..C the characters (as
    `CharVocab`), then one token per merge, in the order the merges were learnt.

    `merges[k] = (left, right)` makes token C + 1 + k, the string left + right. Encoding
    splits the text with `SUBWORD_PATTERN`, then in each piece applies the earliest-learnt
    merge present until none applies (the standard BPE rule), with a cache per piece.
    """

    kind = "subword"

    def __init__(self, symbols: Iterable[str], merges: Iterable[tuple[str, str]]):
        self.chars = CharVocab(symbols)
        self.symbols = self.chars.symbols
        self.merges = [(str(a), str(b)) for a, b in merges]
        self.itos = list(self.chars.itos)
        self.stoi = dict(self.chars.stoi)
        self.ranks: dict[tuple[int, int], int] = {}
        for k, (a, b) in enumerate(self.merges):
            if a not in self.stoi or b not in self.stoi:
                missing = a if a not in self.stoi else b
                raise ValueError(f"merge {k} ({a!r}, {b!r}): {missing!r} is not a token made before it")
            if a + b in self.stoi:
                raise ValueError(f"merge {k} ({a!r}, {b!r}) makes {a + b!r}, which is already a token")
            self.ranks[(self.stoi[a], self.stoi[b])] = len(self.itos)
            self.stoi[a + b] = len(self.itos)
            self.itos.append(a + b)
        self.lengths = np.array([1] + [len(t) for t in self.itos[1:]], dtype=np.int64)  # unknown: 1 char
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def build(cls, pieces: Iterable[str], size: int = 4096) -> "SubwordVocab":
        """Learn merges on the text until the vocabulary holds `size` tokens (or no pair
        occurs twice). Ties between equally frequent pairs go to the lower ids."""
        counts: Counter = Counter()
        for piece in whole_pieces(pieces):
            counts.update(_PIECE.findall(piece))
        chars = CharVocab(sorted({c for word in counts for c in word}))
        if size < len(chars.itos):
            raise ValueError(f"subword vocabulary size {size} is smaller than the training text's "
                             f"{len(chars.itos)} characters (with <unk>); give at least that")
        return cls(chars.symbols, _learn_merges(counts, chars.stoi, size - len(chars.itos)))

    def __len__(self) -> int:
        return len(self.itos)

    def _piece(self, piece: str) -> list[int]:
        ids = self._cache.get(piece)
        if ids is not None:
            return ids
        ids = [self.chars.stoi.get(c, 0) for c in piece]
        ranks = self.ranks
        while len(ids) > 1:
            best = min(((ranks.get(pair), k) for k, pair in enumerate(zip(ids, ids[1:]))
                        if pair in ranks), default=None)
            if best is None:
                break
            ids = _merge(ids, (ids[best[1]], ids[best[1] + 1]), best[0])
        if len(self._cache) < 1_000_000:
            self._cache[piece] = ids
        return ids

    def encode(self, text: str) -> np.ndarray:
        """text -> ids; unseen characters map to 0 (one id each)."""
        ids: list[int] = []
        for piece in _PIECE.findall(text):
            ids += self._piece(piece)
        return np.asarray(ids, dtype=np.int64)

    def unknown(self, text: str) -> list[str]:
        return self.chars.unknown(text)

    def num_chars(self, ids) -> int:
        """The characters that `ids` decode to (an unknown id counts as one)."""
        return int(self.lengths[np.asarray(ids, dtype=np.int64)].sum())

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.token(int(i)) for i in ids)

    def token(self, i: int) -> str:
        return self.itos[i] if i else "\ufffd"

    def to_json(self) -> dict:
        return {"format": FORMAT_VERSION, "kind": self.kind, "unk": UNK, "pattern": SUBWORD_PATTERN,
                "symbols": self.symbols, "merges": [list(m) for m in self.merges]}


def _merge(ids: list[int], pair: tuple[int, int], new: int) -> list[int]:
    """`ids` with each occurrence of `pair`, left to right, replaced by `new`."""
    merged, k = [], 0
    while k < len(ids):
        if k + 1 < len(ids) and ids[k] == pair[0] and ids[k + 1] == pair[1]:
            merged.append(new)
            k += 2
        else:
            merged.append(ids[k])
            k += 1
    return merged


def _learn_merges(counts: Counter, stoi: dict[str, int], num_merges: int) -> list[tuple[str, str]]:
    """BPE merges over the distinct pieces `counts` (piece -> occurrences): the pair counts
    are kept up to date word by word, and a heap with stale entries skipped finds the best."""
    import heapq

    itos = {i: c for c, i in stoi.items()}
    words = [[stoi[c] for c in w] for w in counts]
    freq = list(counts.values())
    pairs: Counter = Counter()
    where: dict[tuple[int, int], set[int]] = {}
    for w, (word, n) in enumerate(zip(words, freq)):
        for pair in zip(word, word[1:]):
            pairs[pair] += n
            where.setdefault(pair, set()).add(w)
    heap = [(-n, pair) for pair, n in pairs.items()]
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    next_id = max(itos) + 1
    while len(merges) < num_merges and heap:
        n, pair = heapq.heappop(heap)
        if -n != pairs.get(pair, 0):
            continue  # stale: the count changed since this entry was pushed
        if -n < 2:
            break
        new = next_id
        next_id += 1
        itos[new] = itos[pair[0]] + itos[pair[1]]
        merges.append((itos[pair[0]], itos[pair[1]]))
        changed: set[tuple[int, int]] = set()
        for w in where.pop(pair, ()):
            word, count = words[w], freq[w]
            for old in zip(word, word[1:]):
                pairs[old] -= count
                changed.add(old)
            merged = words[w] = _merge(word, pair, new)
            for p in zip(merged, merged[1:]):
                pairs[p] += count
                where.setdefault(p, set()).add(w)
                changed.add(p)
        pairs.pop(pair, None)
        for p in changed:
            if pairs.get(p, 0) > 0:
                heapq.heappush(heap, (-pairs[p], p))
            else:
                pairs.pop(p, None)
    return merges
