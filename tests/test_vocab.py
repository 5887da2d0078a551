"""Character and word vocabularies: building, unknown symbols, encode/decode, JSON round trip."""
import json

import numpy as np
import pytest

from rnnkit.data import EOL, UNK, CharVocab, WordVocab, load_vocab, tokenize_words


def test_char_vocab_orders_by_code_point_after_unknown():
    v = CharVocab.build(["hello", " world\n"])
    assert v.itos[0] == UNK
    assert v.symbols == sorted(set("hello world\n"))
    assert len(v) == len(set("hello world\n")) + 1


def test_char_encode_decode_round_trip_and_unknown():
    v = CharVocab.build(["abc\n"])
    ids = v.encode("cab\nz€")
    assert v.symbols == ["\n", "a", "b", "c"]
    assert ids.tolist() == [4, 2, 3, 1, 0, 0]  # z and € were never seen: unknown (0)
    assert v.decode(ids[:4]) == "cab\n"
    assert v.decode([0]) == "\ufffd"
    assert v.unknown("abz€z") == ["z", "€"]


def test_char_encode_handles_characters_beyond_the_basic_plane():
    v = CharVocab.build(["a😀"])
    assert v.decode(v.encode("😀a😀")) == "😀a😀"


def test_char_vocab_min_count_and_bad_symbols():
    v = CharVocab.build(["aaab"], min_count=2)
    assert v.symbols == ["a"]
    with pytest.raises(ValueError, match="single characters"):
        CharVocab(["ab"])
    with pytest.raises(ValueError, match="repeat"):
        CharVocab(["a", "a"])


def test_word_vocab_top_k_with_unknown_and_end_of_line():
    text = "the cat sat\nthe cat\nthe dog ran\n"
    v = WordVocab.build([text], size=2)
    assert v.itos == [UNK, EOL, "the", "cat"]
    assert v.encode("the dog\ncat").tolist() == [2, 0, 1, 3]
    assert v.decode([2, 3, 1, 2, 0]) == f"the cat\nthe {UNK}"
    assert v.unknown("the dog ran") == ["dog", "ran"]


def test_tokenize_words_splits_punctuation_and_marks_line_ends():
    assert tokenize_words("def f(x):\n  return x+1") == \
        ["def", "f", "(", "x", ")", ":", EOL, "return", "x", "+", "1"]


@pytest.mark.parametrize("make", [lambda: CharVocab.build(["héllo\n\t"]),
                                  lambda: WordVocab.build(["a b b\nc"], size=5)])
def test_json_round_trip(tmp_path, make):
    v = make()
    path = tmp_path / "vocab.json"
    v.save(path)
    again = load_vocab(path)
    assert type(again) is type(v) and again.itos == v.itos
    assert again.fingerprint() == v.fingerprint()
    assert json.loads(path.read_text(encoding="utf-8"))["kind"] == v.kind
    assert not list(tmp_path.glob("*.tmp"))


def test_load_vocab_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no vocabulary file"):
        load_vocab(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_vocab(bad)
    bad.write_text('{"kind": "bytes"}')
    with pytest.raises(ValueError, match="unknown vocabulary kind"):
        load_vocab(bad)


def test_dtype_fits_vocabulary():
    assert CharVocab.build(["abc"]).dtype == np.uint8
    assert WordVocab([f"w{i}" for i in range(300)]).dtype == np.uint16
