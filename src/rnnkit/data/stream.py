"""The encoded-corpus cache, and the sizes of the token streams for truncated BPTT.

`encode_split` turns one split of a corpus into ids once and keeps them in the cache
(`$RNNKIT_CACHE`, else `$XDG_CACHE_HOME/rnnkit`, else `~/.cache/rnnkit`) as a raw
array file named by a hash of the split's content and the vocabulary; later runs
memory-map it, so a 100 MB corpus costs no Python objects and no re-encoding.

The ids go to `rnnkit.train.tbptt.StreamBatches` (char-rnn batching: N parallel
streams served in (N, bptt) chunks, the state carried from chunk to chunk) as a
torch view of the memory map: only the chunk being served is ever copied. The corpus
is one continuous text (documents concatenated, as char-rnn does), so no reset
masks are needed inside a pass. `check_fits` and `eval_streams` size the streams and
name the problem when a split is too small.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from .text import Corpus, CorpusError
from .vocab import Vocab, whole_pieces


def cache_dir() -> Path:
    """`$RNNKIT_CACHE`, else `$XDG_CACHE_HOME/rnnkit`, else `~/.cache/rnnkit`."""
    if os.environ.get("RNNKIT_CACHE"):
        return Path(os.environ["RNNKIT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rnnkit"


def encode_pieces(pieces, vocab: Vocab) -> Iterator[np.ndarray]:
    """Encode text pieces; a word or subword vocabulary's pieces are cut at line ends so no
    word is split (the ids are those of the whole text)."""
    if vocab.kind == "subword":
        for piece in whole_pieces(pieces):
            yield vocab.encode(piece)
        return
    if vocab.kind == "char":
        for piece in pieces:
            yield vocab.encode(piece)
        return
    carry = ""
    for piece in pieces:
        piece = carry + piece
        cut = piece.rfind("\n") + 1
        carry = piece[cut:]
        if cut:
            yield vocab.encode(piece[:cut])
    if carry:
        yield vocab.encode(carry)


def encode_split(corpus: Corpus, split: str, vocab: Vocab, cache: bool | str | Path = True) -> np.ndarray:
    """The ids of one split, (T,) in `vocab.dtype`; memory-mapped from the cache when cache is on.

    cache: True (the default cache dir), a directory, or False (encode in memory).
    Raises CorpusError when the split holds no tokens.
    """
    dtype = np.dtype(vocab.dtype)
    if cache is False:
        parts = [a.astype(dtype) for a in encode_pieces(corpus.blocks(split), vocab)]
        ids = np.concatenate(parts) if parts else np.zeros(0, dtype)
        return _nonempty(ids, corpus, split)
    folder = (cache_dir() if cache is True else Path(cache)) / "encoded"
    key = hashlib.sha256(f"{corpus.fingerprint(split)}:{vocab.fingerprint()}".encode()).hexdigest()[:32]
    path = folder / f"{key}.{dtype.name}"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.name}.tmp{os.getpid()}")
        try:
            with open(temporary, "wb") as f:
                for ids in encode_pieces(corpus.blocks(split), vocab):
                    ids.astype(dtype).tofile(f)
            temporary.replace(path)  # complete files only: a crash leaves no half cache entry
        finally:
            temporary.unlink(missing_ok=True)
    if path.stat().st_size == 0:
        return _nonempty(np.zeros(0, dtype), corpus, split)
    # copy-on-write: a writable array for torch.from_numpy; the cache file is never written
    return np.memmap(path, dtype=dtype, mode="c")


def _nonempty(ids: np.ndarray, corpus: Corpus, split: str) -> np.ndarray:
    if len(ids) == 0:
        raise CorpusError(f"the {split} split of corpus {corpus.name!r} is empty (no tokens)")
    return ids


def check_fits(num_tokens: int, batch_size: int, bptt: int, name: str) -> None:
    """CorpusError unless num_tokens fill at least one (batch_size, bptt) chunk with its targets."""
    need = batch_size * (bptt + 1)
    if num_tokens < need:
        raise CorpusError(
            f"the {name} has {num_tokens:,} tokens, fewer than one batch of batch_size {batch_size} "
            f"streams x (bptt {bptt} + 1) = {need:,} tokens; use more text or a smaller "
            f"data.batch_size / trainer.bptt")


def eval_streams(num_tokens: int, batch_size: int, bptt: int) -> tuple[int, int]:
    """(streams, bptt) for scoring a split: fewer streams for a short split, so any split of
    at least two tokens can be scored. CorpusError below two tokens."""
    if num_tokens < 2:
        raise CorpusError(f"a split of {num_tokens} token(s) cannot be scored (at least 2 are needed)")
    bptt = max(1, min(bptt, num_tokens - 1))
    return max(1, min(batch_size, (num_tokens - 1) // bptt)), bptt
