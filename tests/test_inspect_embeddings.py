"""Embedding neighbours and maps, word2vec vectors in and out, and a word model that starts
from them (frozen or fine-tuned)."""
import shutil
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from rnnkit.cli import load_run, main
from rnnkit.data.vocab import CharVocab, WordVocab
from rnnkit.inspect.embeddings import frequent_ids, nearest, plot_embeddings
from rnnkit.inspect.pretrained import init_embedding, read_word2vec

STDLIB = Path(sysconfig.get_paths()["stdlib"])
FILES = ["textwrap.py", "shlex.py", "string.py", "glob.py", "fnmatch.py", "bisect.py", "keyword.py",
         "colorsys.py", "this.py", "struct.py", "copy.py", "heapq.py"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path / "cache"))


def test_nearest_neighbours_by_cosine():
    vocab = WordVocab(["a", "b", "c", "d"])  # ids: <unk> 0, <eol> 1, a 2, b 3, c 4, d 5
    matrix = torch.tensor([[9.0, 9], [0, 1], [1, 0], [2, 0.2], [-1, 0], [1, 1]])
    found = nearest(matrix, vocab, "a", k=3)
    assert [w for w, _ in found] == ["b", "d", "\n"]
    assert found[0][1] == pytest.approx(2 / np.hypot(2, 0.2))
    assert found[1][1] == pytest.approx(1 / np.sqrt(2))
    with pytest.raises(KeyError, match="'zz' is not one token"):
        nearest(matrix, vocab, "zz")


def test_plot_writes_a_labelled_png(tmp_path):
    vocab = WordVocab([f"w{i}" for i in range(30)])
    matrix = torch.randn(len(vocab), 8)
    xy = plot_embeddings(matrix, vocab, tmp_path / "e.png", count=20, method="pca")
    assert xy.shape == (20, 2)
    # PCA keeps the first component's variance at least as large as the second's
    assert xy[:, 0].var() >= xy[:, 1].var()
    assert (tmp_path / "e.png").read_bytes()[:4] == b"\x89PNG"
    assert plot_embeddings(matrix, vocab, tmp_path / "t.png", count=20, method="tsne").shape == (20, 2)
    # a character vocabulary is in code-point order: frequency comes from counts in a text
    chars = CharVocab("abcd")  # ids: unknown 0, a 1, b 2, c 3, d 4
    assert frequent_ids(chars, 3, np.array([50, 1, 7, 0, 3])) == [2, 4, 1]  # b, d, a; never unknown or unseen
    assert frequent_ids(vocab, 3) == [2, 3, 4]  # a word vocabulary is stored most frequent first


def test_init_embedding_copies_found_rows_and_reports_coverage(tmp_path):
    from gensim.models import KeyedVectors

    kv = KeyedVectors(4)
    kv.add_vectors(["a", "c", "zzz"], np.arange(12, dtype=np.float32).reshape(3, 4))
    for binary, name in ((False, "v.txt"), (True, "v.bin")):
        kv.save_word2vec_format(str(tmp_path / name), binary=binary)
        vectors = read_word2vec(tmp_path / name)
        vocab = WordVocab(["a", "b", "c"])
        embedding = nn.Embedding(len(vocab), 4)
        before = embedding.weight.detach().clone()
        coverage = init_embedding(embedding, vocab, vectors, freeze=True, source=name)
        assert (coverage.found, coverage.total) == (2, 5)
        assert coverage.missing == ["<unk>", "<eol>", "b"]
        assert "2 of 5 vocabulary words (40.0%)" in str(coverage)
        assert torch.equal(embedding.weight[2], torch.tensor([0.0, 1, 2, 3]))
        assert torch.equal(embedding.weight[4], torch.tensor([4.0, 5, 6, 7]))
        assert torch.equal(embedding.weight[3], before[3]) and not embedding.weight.requires_grad
    with pytest.raises(ValueError, match="vectors of 4 dimensions, the embedding has 6"):
        init_embedding(nn.Embedding(5, 6), vocab, vectors)
    (tmp_path / "bad.txt").write_text("not a header\n")
    with pytest.raises(ValueError, match="not a word2vec text file"):
        read_word2vec(tmp_path / "bad.txt")


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    """word2vec vectors (16-d) trained by `rnnkit word2vec` on a dozen stdlib files."""
    tmp = tmp_path_factory.mktemp("w2v")
    corpus = tmp / "corpus"
    corpus.mkdir()
    for name in FILES:
        shutil.copy(STDLIB / name, corpus / name)
    out = tmp / "vectors.txt"
    assert main(["word2vec", "--source", "path", "--path", str(corpus), "--out", str(out), "--size", "16",
                 "--min-count", "2", "--epochs", "3"]) == 0
    return corpus, out


def _train_word_model(tmp_path, corpus, embeddings, name):
    recipe = {
        "task": "charlm",
        "data": {"source": "path", "path": str(corpus), "level": "word", "vocab_size": 300, "batch_size": 4,
                 "sample_every": 0, "embeddings": embeddings},
        "model": {"cell": "gru", "hidden_size": 16, "num_layers": 1, "tie_weights": False},
        "optim": {"name": "adam", "lr": 0.05},
        "trainer": {"bptt": 10, "max_steps": 4, "eval_every": 4, "eval_batches": 1},
        "run": {"dir": str(tmp_path / name), "seed": 0, "device": "cpu", "tensorboard": False},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return main(["train", str(path)])


def test_word2vec_vectors_start_a_word_model_frozen_or_fine_tuned(vectors, tmp_path, capsys):
    corpus, out = vectors
    header = out.read_text().split("\n", 1)[0].split()
    assert int(header[1]) == 16 and int(header[0]) > 200
    kv = read_word2vec(out)

    assert _train_word_model(tmp_path, corpus, f"frozen:{out}", "frozen") == 0
    err = capsys.readouterr().err
    assert "data.embeddings:" in err and "vocabulary words" in err and "have a pretrained vector" in err
    assert _train_word_model(tmp_path, corpus, str(out), "tuned") == 0
    moved = out.with_name("elsewhere.txt")
    out.rename(moved)  # a trained run needs only its checkpoint, not the vectors file
    try:
        task, frozen, _, _ = load_run(tmp_path / "frozen", "last", "cpu")
        _, tuned, _, _ = load_run(tmp_path / "tuned", "last", "cpu")
    finally:
        moved.rename(out)
    word = next(w for w in ("def", "self", "return") if w in task.vocab.stoi and w in kv.key_to_index)
    i = task.vocab.stoi[word]
    assert torch.equal(frozen.embedding.weight[i], torch.from_numpy(kv[word].copy()))
    assert not torch.allclose(tuned.embedding.weight[i], torch.from_numpy(kv[word].copy()))
    assert (tuned.embedding.weight[i] - torch.from_numpy(kv[word].copy())).abs().max() < 0.5

    capsys.readouterr()
    assert main(["embeddings", str(tmp_path / "frozen"), "--neighbours", word, "-k", "3",
                 "--plot", str(tmp_path / "e.png"), "--count", "40"]) == 0
    printed = capsys.readouterr().out
    expected = [w for w, _ in kv.most_similar(word, topn=50) if w in task.vocab.stoi][:1]
    assert f"nearest to {word} (cosine):  {expected[0]} " in printed  # the same geometry as gensim's
    assert (tmp_path / "e.png").exists()


def test_embedding_errors(vectors, tmp_path, capsys):
    corpus, out = vectors
    assert _train_word_model(tmp_path, corpus, str(tmp_path / "none.txt"), "a") == 2
    assert "data.embeddings" in capsys.readouterr().err
    recipe_out = _train_word_model(tmp_path, corpus, f"frozen:{out}", "b")
    assert recipe_out == 0
    assert main(["embeddings", str(tmp_path / "b")]) == 2
    assert "give --neighbours" in capsys.readouterr().err
    assert main(["embeddings", str(tmp_path / "b"), "--neighbours", "qqqq"]) == 2
    assert "'qqqq' is not one token" in capsys.readouterr().err
