"""Character and word vocabularies: building, unknown symbols, encode/decode, JSON round trip."""
import json

import numpy as np
import pytest

from rnnkit.data import EOL, UNK, CharVocab, SubwordVocab, WordVocab, load_vocab, tokenize_words
from rnnkit.data.vocab import SUBWORD_PATTERN


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
                                  lambda: WordVocab.build(["a b b\nc"], size=5),
                                  lambda: SubwordVocab.build(["def f(x):\n    return x  # héllo\n"], size=30)])
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


# -- subword (byte-pair) vocabulary ---------------------------------------------------

def merge_strings(symbols: list, a: str, b: str) -> list:
    """Pieces as strings: every a followed by b, left to right, becomes a + b."""
    out = []
    for symbol in symbols:
        if out and out[-1] == a and symbol == b:
            out[-1] = a + b
        else:
            out.append(symbol)
    return out


def reference_merges(text: str, num_merges: int) -> list[tuple[str, str]]:
    """BPE the slow way: recount every pair of every piece after each merge; the most
    frequent pair wins, ties to the pair of lower ids (ids in creation order)."""
    import re
    from collections import Counter

    counts = Counter(re.findall(SUBWORD_PATTERN, text))
    order = {c: i for i, c in enumerate(sorted({c for w in counts for c in w}))}
    words = {w: list(w) for w in counts}
    merges = []
    while len(merges) < num_merges:
        pairs = Counter()
        for w, symbols in words.items():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += counts[w]
        best = min(pairs, key=lambda p: (-pairs[p], order[p[0]], order[p[1]]), default=None)
        if best is None or pairs[best] < 2:
            break
        order[best[0] + best[1]] = len(order)
        merges.append(best)
        words = {w: merge_strings(symbols, *best) for w, symbols in words.items()}
    return merges


def reference_encode(vocab: SubwordVocab, text: str) -> list[int]:
    """Each piece's characters, then every merge applied in the order it was learnt."""
    import re

    out = []
    for piece in re.findall(SUBWORD_PATTERN, text):
        symbols = [c if c in vocab.chars.stoi else None for c in piece]
        for a, b in vocab.merges:
            symbols = merge_strings(symbols, a, b)
        out += [0 if s is None else vocab.stoi[s] for s in symbols]
    return out


def random_code(seed: int, n: int = 400) -> str:
    rng = np.random.default_rng(seed)
    words = ["def", "self", "return", "x", "x1", "if", "in", "range", "(", "):", "==", "_x", "42", "é"]
    spaces = [" ", "\n", "\n    ", "\n        ", "  "]
    return "".join(words[rng.integers(len(words))] + spaces[rng.integers(len(spaces))] for _ in range(n))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_subword_merges_match_a_slow_reference(seed):
    text = random_code(seed)
    v = SubwordVocab.build([text[:700], text[700:]], size=60)  # pieces of one text: the counts add up
    assert v.merges == reference_merges(text, 60 - len(v.chars.itos))
    assert len(v) == 60


@pytest.mark.parametrize("seed", [0, 3])
def test_subword_encoding_is_the_learnt_merges_applied_in_order(seed):
    v = SubwordVocab.build([random_code(seed)], size=80)
    other = random_code(seed + 10, 200) + "q unseen ü\n"  # characters never seen in training
    ids = v.encode(other)
    assert ids.tolist() == reference_encode(v, other)
    assert v.num_chars(ids) == len(other)
    assert v.unknown(other) == ["q", "ü"]
    assert v.decode(ids) == other.replace("q", "\ufffd").replace("ü", "\ufffd")


def test_subword_round_trip_keeps_every_space_and_never_crosses_a_piece():
    text = "def f(x):\n    return x  # héllo\n\n\tif x == 1:\n        pass\n"
    v = SubwordVocab.build([text * 5], size=200)
    assert v.decode(v.encode(text)) == text
    import re

    merged = v.itos[len(v.chars.itos):]
    assert "    return" not in merged and " return" in merged
    for token in merged:  # each token lies inside one piece of the pre-tokenizer
        assert len(re.findall(SUBWORD_PATTERN, token)) == 1, token


def test_subword_vocab_stops_when_no_pair_repeats_and_checks_its_size():
    v = SubwordVocab.build(["abab"], size=1000)
    assert v.merges == [("a", "b")] and len(v) == 4  # <unk>, a, b, ab: "abab" is one piece
    with pytest.raises(ValueError, match="smaller than the training text's 4 characters"):
        SubwordVocab.build(["abc"], size=3)
    with pytest.raises(ValueError, match="is not a token made before it"):
        SubwordVocab(["a", "b"], [("a", "c")])
    with pytest.raises(ValueError, match="already a token"):
        SubwordVocab(["a", "b"], [("a", "b"), ("a", "b")])


def test_subword_vocab_file_names_a_different_pre_tokenizer(tmp_path):
    v = SubwordVocab.build(["abab"], size=10)
    data = v.to_json()
    data["pattern"] = r"\w+"
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="another pre-tokenizer pattern"):
        load_vocab(path)


def test_subword_encoding_of_a_split_in_blocks_is_that_of_the_whole_text(tmp_path):
    from rnnkit.data import encode_split, load_corpus

    text = random_code(5, 3000)
    v = SubwordVocab.build([text], size=100)
    rng = np.random.default_rng(0)
    cuts = sorted(rng.choice(len(text), 40, replace=False))
    blocks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    from rnnkit.data.stream import encode_pieces

    whole = v.encode(text)
    assert np.concatenate(list(encode_pieces(blocks, v))).tolist() == whole.tolist()
    path = tmp_path / "code.py"
    path.write_text(text, encoding="utf-8")
    corpus = load_corpus("path", str(path), fractions=(0.8, 0.1, 0.1))
    ids = encode_split(corpus, "train", v, cache=tmp_path / "cache")
    assert np.asarray(ids).tolist() == v.encode(corpus.text("train")).tolist()
