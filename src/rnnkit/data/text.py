"""Text corpora for language models: where the text comes from and how it is split.

Three sources, each giving a `Corpus` of three splits (`train`, `valid`, `test`):

- `stdlib`: the Python standard library's own `.py` source on this machine (found
  through `sysconfig`), test folders, `site-packages` and build-specific files left
  out. Files are listed in sorted order and split by file with a seeded shuffle, so
  the split is the same on every machine with the same Python.
- `path`: a user's text file or directory of files. A directory of at least
  `MIN_FILES_TO_SPLIT_BY_FILE` files is split by file like `stdlib`; a single file
  (or a small directory) is split by position: the first 90% of its bytes train, the
  next 5% validate, the last 5% test, each cut moved forward to the next line end.
- `bible`: the King James Bible from the Debian package `bible-kjv`
  (`bible -f 'gen1:1-rev22:21'`), written once to the cache and then read like `path`.

A split is a tuple of `Document`s, each a byte range of a file, read lazily in blocks:
a 100 MB corpus is never one Python string unless someone asks for `Corpus.text`.
Undecodable bytes are an error naming the file and the byte offset, unless
`errors="replace"` (then they become U+FFFD).
"""
from __future__ import annotations

import codecs
import fnmatch
import hashlib
import os
import random
import shutil
import subprocess
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

SPLITS = ("train", "valid", "test")
DEFAULT_FRACTIONS = (0.90, 0.05, 0.05)
MIN_FILES_TO_SPLIT_BY_FILE = 20
BLOCK_BYTES = 1 << 20  # files are read and decoded in blocks of this many bytes
_BINARY_SNIFF_BYTES = 8192

# Folders of the standard library that are not its source: tests, installed packages,
# compiled extensions and files written by this machine's build.
_STDLIB_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages",
                     "__pycache__", "lib-dynload"}
_STDLIB_SKIP_PREFIXES = ("config-", "test_")
_STDLIB_SKIP_FILES = ("_sysconfigdata_*",)

BIBLE_INSTALL_HINT = ("the King James Bible comes from the Debian package 'bible-kjv', which "
                      "provides the 'bible' command; install it with `sudo apt-get install "
                      "bible-kjv` (Debian/Ubuntu), or use data.source=path with your own copy")


class CorpusError(ValueError):
    """A corpus that cannot be used: missing, empty, binary or undecodable; the message says which."""


@dataclass(frozen=True)
class Document:
    """A byte range [start, end) of one file; `name` is how messages refer to it."""

    path: Path
    name: str
    start: int = 0
    end: int | None = None  # None: to the end of the file

    def blocks(self, errors: str = "strict") -> Iterator[str]:
        """The decoded text in pieces of about BLOCK_BYTES bytes (UTF-8).

        errors: "strict" raises CorpusError naming the file and byte offset of the
        first undecodable byte; "replace" puts U+FFFD in its place.
        """
        decoder = codecs.getincrementaldecoder("utf-8")(errors=errors)
        position = self.start
        with open(self.path, "rb") as f:
            f.seek(self.start)
            remaining = None if self.end is None else self.end - self.start
            while remaining is None or remaining > 0:
                size = BLOCK_BYTES if remaining is None else min(BLOCK_BYTES, remaining)
                raw = f.read(size)
                final = not raw or (remaining is not None and len(raw) == remaining)
                pending = len(decoder.getstate()[0])  # bytes held back from the last block
                try:
                    text = decoder.decode(raw, final=final)
                except UnicodeDecodeError as e:
                    offset = position - pending + e.start
                    raise CorpusError(
                        f"{self.name}: cannot decode byte 0x{e.object[e.start]:02x} at byte offset "
                        f"{offset} as UTF-8 ({e.reason}); fix the file, or set "
                        f"data.encoding_errors=replace to replace undecodable bytes") from None
                if text:
                    yield text
                if final:
                    return
                position += len(raw)
                if remaining is not None:
                    remaining -= len(raw)

    def read_bytes(self) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(self.start)
            return f.read() if self.end is None else f.read(self.end - self.start)

    def num_bytes(self) -> int:
        end = self.path.stat().st_size if self.end is None else self.end
        return end - self.start


@dataclass(frozen=True)
class Corpus:
    """A named corpus: three splits of documents, read with one encoding-error policy."""

    name: str
    splits: dict  # split name -> tuple[Document, ...]
    errors: str = "strict"

    def documents(self, split: str) -> tuple[Document, ...]:
        if split not in self.splits:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return self.splits[split]

    def blocks(self, split: str) -> Iterator[str]:
        """The split's text in pieces, documents in order, concatenated with nothing between."""
        for doc in self.documents(split):
            yield from doc.blocks(self.errors)

    def text(self, split: str) -> str:
        """The whole split as one string (fine for the stdlib's ~12 MB; avoid for huge corpora)."""
        return "".join(self.blocks(split))

    def num_bytes(self, split: str) -> int:
        return sum(doc.num_bytes() for doc in self.documents(split))

    def fingerprint(self, split: str) -> str:
        """sha256 of the split's names, byte ranges and content, and the error policy."""
        digest = hashlib.sha256(f"{self.errors}\n".encode())
        for doc in self.documents(split):
            digest.update(f"{doc.name}\0{doc.start}\0{doc.end}\0".encode())
            with open(doc.path, "rb") as f:
                f.seek(doc.start)
                remaining = doc.end - doc.start if doc.end is not None else None
                while remaining is None or remaining > 0:
                    raw = f.read(BLOCK_BYTES if remaining is None else min(BLOCK_BYTES, remaining))
                    if not raw:
                        break
                    digest.update(raw)
                    if remaining is not None:
                        remaining -= len(raw)
        return digest.hexdigest()

    def describe(self) -> str:
        parts = [f"{s} {len(self.splits[s])} docs / {self.num_bytes(s):,} bytes" for s in SPLITS]
        return f"corpus {self.name}: " + ", ".join(parts)


# -- sources ---------------------------------------------------------------------------
def load_corpus(source: str, path: str | None = None, *, seed: int = 0,
                fractions=DEFAULT_FRACTIONS, encoding_errors: str = "strict",
                glob: str = "*", max_files: int = 0) -> Corpus:
    """Build a corpus by source name.

    source: "stdlib", "path" (needs `path`) or "bible". seed and fractions fix the
    train/valid/test split; encoding_errors "strict" or "replace"; glob selects files
    inside a directory (`path`); max_files > 0 keeps only the first that many files
    of each split's listing (for quick tests), 0 keeps all.
    """
    if encoding_errors not in ("strict", "replace"):
        raise ValueError(f"encoding_errors must be 'strict' or 'replace', got {encoding_errors!r}")
    fractions = _check_fractions(fractions)
    if source == "stdlib":
        if path:
            raise ValueError("data.path is only for source=path (source=stdlib finds its own files)")
        corpus = stdlib_corpus(seed=seed, fractions=fractions, encoding_errors=encoding_errors)
    elif source == "path":
        if not path:
            raise ValueError("source=path needs data.path: a text file or a directory of text files")
        corpus = path_corpus(path, seed=seed, fractions=fractions,
                             encoding_errors=encoding_errors, glob=glob)
    elif source == "bible":
        corpus = bible_corpus(fractions=fractions, encoding_errors=encoding_errors)
    else:
        raise ValueError(f"unknown corpus source {source!r}; expected 'stdlib', 'path' or 'bible'")
    if max_files:
        corpus = Corpus(corpus.name, {s: docs[:max_files] for s, docs in corpus.splits.items()},
                        corpus.errors)
    return corpus


def stdlib_files(root: str | os.PathLike | None = None) -> list[Path]:
    """The standard library's `.py` files, sorted by path relative to `root`.

    root defaults to `sysconfig.get_paths()["stdlib"]`. Left out: test folders
    (`test`, `tests`, `idle_test`, `test_*`), `site-packages`, `__pycache__`,
    `lib-dynload`, `config-*` and the build-specific `_sysconfigdata_*.py`.
    """
    root = Path(root or sysconfig.get_paths()["stdlib"])
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs
                   if d not in _STDLIB_SKIP_DIRS and not d.startswith(_STDLIB_SKIP_PREFIXES)]
        for name in files:
            if name.endswith(".py") and not any(fnmatch.fnmatch(name, p) for p in _STDLIB_SKIP_FILES):
                found.append(Path(folder, name))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def stdlib_corpus(seed: int = 0, fractions=DEFAULT_FRACTIONS,
                  encoding_errors: str = "strict") -> Corpus:
    """The standard library's source split by file (see `stdlib_files`, `split_by_file`)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = stdlib_files(root)
    if not files:
        raise CorpusError(f"no .py files found in the standard library folder {root}")
    docs = [Document(p, p.relative_to(root).as_posix()) for p in files]
    return Corpus("stdlib", split_by_file(docs, seed, fractions), encoding_errors)


def path_corpus(path: str | os.PathLike, seed: int = 0, fractions=DEFAULT_FRACTIONS,
                encoding_errors: str = "strict", glob: str = "*") -> Corpus:
    """A user's file or directory (walked recursively, hidden entries skipped, `glob` applied).

    Errors (CorpusError): the path does not exist; no files; empty files only; binary
    files (named, with the option that leaves them out).
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise CorpusError(f"corpus path {str(root)!r} does not exist")
    if root.is_file():
        files, base = [root], root.parent
    else:
        base = root
        files = []
        for folder, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            files += [Path(folder, n) for n in names
                      if not n.startswith(".") and fnmatch.fnmatch(n, glob)]
        files.sort(key=lambda p: p.relative_to(base).as_posix())
        if not files:
            raise CorpusError(f"no files matching {glob!r} in directory {str(root)!r}")
    binary = [p for p in files if is_binary(p)]
    if binary:
        shown = ", ".join(p.relative_to(base).as_posix() for p in binary[:5])
        more = f" and {len(binary) - 5} more" if len(binary) > 5 else ""
        raise CorpusError(f"binary file(s) in the corpus: {shown}{more} (a NUL byte in the first "
                          f"{_BINARY_SNIFF_BYTES} bytes); select the text files with data.glob "
                          f"(e.g. data.glob='*.txt') or remove them")
    files = [p for p in files if p.stat().st_size > 0]
    if not files:
        raise CorpusError(f"corpus {str(root)!r} is empty: its files hold no text")
    docs = [Document(p, p.relative_to(base).as_posix()) for p in files]
    if len(docs) >= MIN_FILES_TO_SPLIT_BY_FILE:
        splits = split_by_file(docs, seed, fractions)
    else:
        splits = split_by_position(docs, fractions)
    return Corpus(root.name or str(root), splits, encoding_errors)


def bible_corpus(fractions=DEFAULT_FRACTIONS, encoding_errors: str = "strict",
                 cache_dir: str | os.PathLike | None = None) -> Corpus:
    """The King James Bible, Genesis to Revelation, split by position (90/5/5 by default).

    Needs the `bible` command of Debian's `bible-kjv`; without it, CorpusError with the
    install command. The text is written once to `<cache>/bible-kjv.txt`.
    """
    from .stream import cache_dir as default_cache_dir

    target = Path(cache_dir or default_cache_dir()) / "bible-kjv.txt"
    if not target.exists():
        command = shutil.which("bible")
        if command is None:
            raise CorpusError(f"data.source=bible: no 'bible' command found; {BIBLE_INSTALL_HINT}")
        result = subprocess.run([command, "-f", "gen1:1-rev22:21"], capture_output=True)
        if result.returncode != 0 or not result.stdout.strip():
            raise CorpusError(f"'bible -f gen1:1-rev22:21' failed (exit {result.returncode}): "
                              f"{result.stderr.decode(errors='replace').strip()}; {BIBLE_INSTALL_HINT}")
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_suffix(f".tmp{os.getpid()}")
        temporary.write_bytes(result.stdout)
        temporary.replace(target)
    docs = [Document(target, "bible-kjv")]
    return Corpus("bible", split_by_position(docs, fractions), encoding_errors)


# -- splitting -------------------------------------------------------------------------
def _check_fractions(fractions) -> tuple[float, float, float]:
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be three positive numbers (train, valid, test) "
                         f"summing to 1, got {fractions}")
    return fractions


def split_by_file(docs: list[Document], seed: int, fractions=DEFAULT_FRACTIONS) -> dict:
    """Shuffle the files with `random.Random(seed)`, cut by count, keep each split sorted.

    The shuffle depends only on the seed and the (sorted) list of names, so the split is
    the same wherever the same files are present. Valid and test get at least one file.
    """
    if len(docs) < 3:
        raise CorpusError(f"splitting by file needs at least 3 files, got {len(docs)}")
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    n_valid = max(1, round(fractions[1] * len(docs)))
    n_test = max(1, round(fractions[2] * len(docs)))
    test, valid, train = order[:n_test], order[n_test:n_test + n_valid], order[n_test + n_valid:]
    return {name: tuple(docs[i] for i in sorted(part))
            for name, part in (("train", train), ("valid", valid), ("test", test))}


def split_by_position(docs: list[Document], fractions=DEFAULT_FRACTIONS) -> dict:
    """Cut the concatenated files at the train and valid fractions of their bytes.

    Each cut moves forward to just after the next newline, so no line is split
    (and no UTF-8 character). Returns byte-range documents per split.
    """
    sizes = [d.num_bytes() for d in docs]
    total = sum(sizes)
    cuts = [_line_end_after(docs, sizes, round(total * fractions[0])),
            _line_end_after(docs, sizes, round(total * (fractions[0] + fractions[1])))]
    bounds = [0, cuts[0], max(cuts[0], cuts[1]), total]
    splits = {}
    for name, lo, hi in zip(SPLITS, bounds[:-1], bounds[1:]):
        part, offset = [], 0
        for doc, size in zip(docs, sizes):
            a, b = max(lo - offset, 0), min(hi - offset, size)
            if a < b:
                part.append(Document(doc.path, doc.name, doc.start + a,
                                     doc.start + b if (b < size or doc.end is not None) else None))
            offset += size
        splits[name] = tuple(part)
    for name in SPLITS:
        if not splits[name]:
            raise CorpusError(f"the corpus ({total} bytes) is too small to give the {name} split "
                              f"any text; it needs a few lines at least")
    return splits


def _line_end_after(docs, sizes, position: int) -> int:
    """The first global byte position >= `position` that starts a line (or ends a file)."""
    position = max(position - 1, 0)  # a cut already at a line start stays there
    offset = 0
    for doc, size in zip(docs, sizes):
        if position < offset + size:
            with open(doc.path, "rb") as f:
                local = position - offset
                f.seek(doc.start + local)
                while local < size:
                    raw = f.read(min(1 << 16, size - local))
                    cut = raw.find(b"\n")
                    if cut >= 0:
                        return offset + local + cut + 1
                    if not raw:
                        break
                    local += len(raw)
            return offset + size  # no newline left in this file: cut at its end
        offset += size
    return offset


def is_binary(path: Path) -> bool:
    """A NUL byte in the first 8 KiB: what git and grep call binary."""
    with open(path, "rb") as f:
        return b"\0" in f.read(_BINARY_SNIFF_BYTES)
