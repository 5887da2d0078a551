"""Corpora (stdlib, a user's path, the Bible), their splits and errors, and the encoded-corpus cache."""
import os
import stat
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from rnnkit.data import CharVocab, CorpusError, WordVocab, encode_split, load_corpus, stdlib_files
from rnnkit.data import text as text_module
from rnnkit.data.stream import check_fits, eval_streams


def write(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


# -- stdlib -----------------------------------------------------------------------------
def test_stdlib_files_leave_out_tests_and_installed_packages():
    root = Path(sysconfig.get_paths()["stdlib"])
    files = stdlib_files()
    names = [p.relative_to(root).as_posix() for p in files]
    assert len(names) > 300 and "os.py" in names and "json/decoder.py" in names
    assert names == sorted(names)
    for name in names:
        parts = name.split("/")
        assert not {"test", "tests", "idle_test", "site-packages", "__pycache__"} & set(parts), name
        assert not parts[-1].startswith("_sysconfigdata_")


def test_stdlib_split_is_by_file_seeded_and_disjoint():
    a = load_corpus("stdlib")
    b = load_corpus("stdlib")
    names = {s: [d.name for d in a.splits[s]] for s in ("train", "valid", "test")}
    assert names == {s: [d.name for d in b.splits[s]] for s in names}  # the same every time
    everything = sum(names.values(), [])
    assert len(everything) == len(set(everything)) == len(stdlib_files())
    n = len(everything)
    assert abs(len(names["test"]) - 0.05 * n) <= 1 and abs(len(names["valid"]) - 0.05 * n) <= 1
    other = load_corpus("stdlib", seed=1)
    assert [d.name for d in other.splits["test"]] != names["test"]


def test_max_files_keeps_a_slice_of_each_split():
    c = load_corpus("stdlib", max_files=2)
    assert all(len(docs) == 2 for docs in c.splits.values())
    assert len(c.text("valid")) > 0


# -- a user's path ----------------------------------------------------------------------
def test_single_file_is_split_by_position_at_line_ends(tmp_path):
    lines = [f"line {i} ünïcode\n" for i in range(200)]
    path = write(tmp_path / "book.txt", "".join(lines))
    c = load_corpus("path", str(path))
    parts = [c.text(s) for s in ("train", "valid", "test")]
    assert "".join(parts) == "".join(lines)
    assert all(p.endswith("\n") and p for p in parts)
    assert 0.85 < len(parts[0]) / len("".join(lines)) < 0.95


def test_directory_of_many_files_is_split_by_file(tmp_path):
    for i in range(40):
        write(tmp_path / "docs" / f"f{i:02d}.txt", f"file {i}\n")
    write(tmp_path / "docs" / ".hidden.txt", "skip me\n")
    write(tmp_path / "docs" / "notes.md", "not selected\n")
    c = load_corpus("path", str(tmp_path / "docs"), glob="*.txt")
    counts = {s: len(d) for s, d in c.splits.items()}
    assert counts == {"train": 36, "valid": 2, "test": 2}
    assert "skip me" not in c.text("train") + c.text("valid") + c.text("test")


def test_encoding_error_names_file_and_byte_offset(tmp_path, monkeypatch):
    monkeypatch.setattr(text_module, "BLOCK_BYTES", 7)  # the bad byte lies past several blocks
    good = "αβγ line\n" * 20
    path = write(tmp_path / "bad.txt", good.encode() + b"ok \xff tail\n" + good.encode())
    offset = len(good.encode()) + 3
    c = load_corpus("path", str(path))
    with pytest.raises(CorpusError, match=rf"bad\.txt: cannot decode byte 0xff at byte offset {offset}\b"):
        c.text("train")
    replaced = load_corpus("path", str(path), encoding_errors="replace").text("train")
    assert "ok \ufffd tail" in replaced and replaced.startswith(good)


def test_multibyte_characters_across_block_boundaries_decode(tmp_path, monkeypatch):
    monkeypatch.setattr(text_module, "BLOCK_BYTES", 3)
    content = "ünïcödé €uro 😀\n" * 30
    path = write(tmp_path / "u.txt", content)
    c = load_corpus("path", str(path))
    assert "".join(c.text(s) for s in ("train", "valid", "test")) == content


def test_binary_files_in_a_directory_are_named(tmp_path):
    write(tmp_path / "d" / "a.txt", "text\n" * 100)
    write(tmp_path / "d" / "image.png", b"\x89PNG\r\n\x1a\n\0\0\0")
    with pytest.raises(CorpusError, match=r"binary file\(s\) in the corpus: image\.png.*data\.glob"):
        load_corpus("path", str(tmp_path / "d"))
    assert load_corpus("path", str(tmp_path / "d"), glob="*.txt").text("train")


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "nowhere", "does not exist"),
    (lambda d: write(d / "empty.txt", ""), "is empty"),
    (lambda d: (d / "emptydir").mkdir() or d / "emptydir", "no files matching"),
    (lambda d: write(d / "short.txt", "one line only\n"), "too small"),
])
def test_bad_paths_are_clear_errors(tmp_path, make, message):
    with pytest.raises(CorpusError, match=message):
        load_corpus("path", str(make(tmp_path)))


def test_bad_source_arguments():
    with pytest.raises(ValueError, match="unknown corpus source"):
        load_corpus("shakespeare")
    with pytest.raises(ValueError, match="needs data.path"):
        load_corpus("path")
    with pytest.raises(ValueError, match="fractions"):
        load_corpus("stdlib", fractions=(0.5, 0.5, 0.0))


# -- the Bible --------------------------------------------------------------------------
def test_bible_without_the_package_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(text_module.shutil, "which", lambda name: None)
    with pytest.raises(CorpusError, match="apt-get install bible-kjv"):
        load_corpus("bible")


def test_bible_reads_the_bible_command_once(monkeypatch, tmp_path):
    tool = write(tmp_path / "bin" / "bible", "#!/bin/sh\nfor i in $(seq 1 100); do echo \"Gen$i:1 In the beginning.\"; done\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tool.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path / "cache"))
    c = load_corpus("bible")
    assert c.text("train").startswith("Gen1:1 In the beginning.\n")
    assert (tmp_path / "cache" / "bible-kjv.txt").exists()


# -- the encoded-corpus cache ----------------------------------------------------------
def test_encoding_is_cached_by_content_and_memory_mapped(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path / "cache"))
    path = write(tmp_path / "t.txt", "abc def\n" * 300)
    c = load_corpus("path", str(path))
    v = CharVocab.build(c.blocks("train"))
    ids = encode_split(c, "train", v)
    assert isinstance(ids, np.memmap) and ids.dtype == np.uint8
    assert v.decode(ids) == c.text("train")
    files = list((tmp_path / "cache" / "encoded").iterdir())
    assert len(files) == 1
    again = encode_split(c, "train", v)
    assert list((tmp_path / "cache" / "encoded").iterdir()) == files and np.array_equal(again, ids)
    assert np.array_equal(encode_split(c, "train", v, cache=False), ids)
    write(path, "abc xyz\n" * 300)  # new content: a new cache entry
    encode_split(load_corpus("path", str(path)), "train", v)
    assert len(list((tmp_path / "cache" / "encoded").iterdir())) == 2


def test_word_encoding_does_not_split_words_across_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(text_module, "BLOCK_BYTES", 5)
    path = write(tmp_path / "w.txt", "alpha beta gamma\n" * 40)
    c = load_corpus("path", str(path))
    v = WordVocab.build([c.text("train")], size=10)
    ids = encode_split(c, "train", v, cache=tmp_path)
    assert 0 not in ids.tolist()
    assert np.array_equal(ids, v.encode(c.text("train")))


def test_stream_sizes():
    check_fits(4 * 11, 4, 10, "train split")
    with pytest.raises(CorpusError, match=r"fewer than one batch of batch_size 4 streams x \(bptt 10 \+ 1\)"):
        check_fits(43, 4, 10, "train split")
    assert eval_streams(1000, 32, 100) == (9, 100)
    assert eval_streams(5, 32, 100) == (1, 4)
    with pytest.raises(CorpusError, match="cannot be scored"):
        eval_streams(1, 32, 100)
