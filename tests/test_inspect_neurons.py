"""Predicates, unit ranking and the `rnnkit neurons` command."""
import io
import shutil
import sysconfig
import tokenize
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from rnnkit.cli import main
from rnnkit.inspect.neurons import TextActivity, Unit, find_units, parse_unit, read_text
from rnnkit.inspect.predicates import correlations, get_predicate, python_regions
from rnnkit.inspect.record import Trace

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def _expected_regions(text):
    """string / comment per character from Python's own tokenizer."""
    lines = text.splitlines(keepends=True)
    offsets = np.concatenate([[0], np.cumsum([len(line) for line in lines])])
    string = np.zeros(len(text))
    comment = np.zeros(len(text))
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        start = offsets[tok.start[0] - 1] + tok.start[1]
        end = offsets[tok.end[0] - 1] + tok.end[1]
        if tok.type == tokenize.STRING:
            body = tok.string
            prefix = min(body.index("'") if "'" in body else len(body), body.index('"') if '"' in body else len(body))
            close = 3 if body[prefix:prefix + 3] in ("'''", '"""') else 1
            string[start + prefix:end - close] = 1
        elif tok.type == tokenize.COMMENT:
            comment[start:end] = 1
    return string, comment


@pytest.mark.parametrize("name", ["textwrap.py", "shlex.py", "string.py"])
def test_python_scanner_agrees_with_tokenize_on_stdlib_files(name):
    text = (STDLIB / name).read_text(encoding="utf-8")
    string, comment, _ = python_regions(text)
    expected_string, expected_comment = _expected_regions(text)
    assert string.sum() > 500
    np.testing.assert_array_equal(string, expected_string)
    np.testing.assert_array_equal(comment, expected_comment)


def test_scanner_edge_cases_and_simple_predicates():
    text = 'x = r"a\\" # (" + \'b\\\'c\'  # f(\n(y, """q\n)""")\n'
    string, comment, depth = python_regions(text)
    expected_string, expected_comment = _expected_regions(text)
    np.testing.assert_array_equal(string, expected_string)
    np.testing.assert_array_equal(comment, expected_comment)
    assert depth[text.index("(y")] == 1 and depth[text.index("q")] == 1 and depth[-1] == 0
    assert depth[text.index("# f(") + 3] == 0  # a bracket inside a comment does not count

    text = "ab\n    cd\n  e"
    np.testing.assert_array_equal(get_predicate("column")(text), [0, 1, 2, 0, 1, 2, 3, 4, 5, 6, 0, 1, 2])
    np.testing.assert_array_equal(get_predicate("indent")(text) * 4, [0] * 3 + [4] * 7 + [2] * 3)
    np.testing.assert_array_equal(get_predicate("newline")(text), [0, 0, 1] + [0] * 6 + [1, 0, 0, 0])
    np.testing.assert_array_equal(get_predicate("re:c.")("abcdec"), [0, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(get_predicate("quote")('a"bc"d'), [0, 1, 1, 1, 0, 0])
    with pytest.raises(ValueError, match="unknown predicate 'strng'"):
        get_predicate("strng")
    with pytest.raises(ValueError, match="not a regular expression"):
        get_predicate("re:(")


def test_correlations_match_numpy_and_a_planted_unit_is_found_first():
    rng = np.random.default_rng(0)
    values = (rng.random(300) < 0.3).astype(np.float32)
    acts = rng.normal(size=(300, 2, 6)).astype(np.float32)  # (T, layers, H)
    acts[:, 1, 4] = -2 * values + 0.3 * rng.normal(size=300)  # layer 1 unit 4 anti-tracks it
    acts[:, 0, 2] = 0  # a dead unit: r = 0, not NaN
    flat = acts.reshape(300, 12)
    r = correlations(flat, values)
    for c in range(12):
        if c != 2:
            assert r[c] == pytest.approx(np.corrcoef(flat[:, c], values)[0, 1], abs=1e-5)
    assert r[2] == 0
    trace = Trace("rnn", {"h": torch.from_numpy(acts).permute(1, 0, 2)[:, None, None]}, torch.tensor([300]))
    activity = TextActivity(["x"] * 300, trace, np.zeros((300, 3)), None)
    found = find_units(activity, values, kinds=("h",), top=3)
    assert found[0][0] == Unit(1, 4, "h") and found[0][1] < -0.9
    assert all(abs(found[0][1]) >= abs(r) for _, r in found)


def test_parse_unit():
    assert parse_unit("1:42") == Unit(1, 42, "h")
    assert parse_unit("0:7:c") == Unit(0, 7, "c")
    for bad in ("1", "a:2", "1:2:q", "1:2:3:4"):
        with pytest.raises(ValueError, match="unit"):
            parse_unit(bad)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny character LSTM (2 layers) trained for a few steps on textwrap.py."""
    tmp = tmp_path_factory.mktemp("neurons")
    corpus = tmp / "corpus" / "textwrap.py"
    corpus.parent.mkdir()
    shutil.copy(STDLIB / "textwrap.py", corpus)
    recipe = {
        "task": "charlm",
        "data": {"source": "path", "path": str(corpus), "batch_size": 4, "sample_every": 0, "cache": False},
        "model": {"cell": "lstm", "hidden_size": 16, "num_layers": 2},
        "optim": {"name": "adam", "lr": 0.01},
        "trainer": {"bptt": 20, "max_steps": 8, "eval_every": 8, "eval_batches": 2},
        "run": {"dir": str(tmp / "run"), "seed": 0, "device": "cpu"},
    }
    (tmp / "r.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["train", str(tmp / "r.yaml")]) == 0
    return tmp / "run", corpus


def test_neurons_command_writes_pages_and_ranks_units(run, tmp_path, capsys):
    run_dir, corpus = run
    capsys.readouterr()
    out = tmp_path / "p" / "page.html"
    assert main(["neurons", str(run_dir), "--text", str(corpus), "--chars", "600", "--neuron", "1:3",
                 "--neuron", "0:2:f", "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    page = out.read_text()
    assert page.count('class="tok"') == 600 and "layer 0 unit 2 (f)" in page

    find_out = tmp_path / "string.html"
    assert main(["neurons", str(run_dir), "--text", str(corpus), "--chars", "600", "--find", "string",
                 "--top", "3", "--out", str(find_out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {find_out}" in printed and "predicate string over 600 characters" in printed
    ranked = [(line.split()[1], float(line.split("r = ")[1])) for line in printed.splitlines() if "r = " in line]
    assert len(ranked) == 3
    # the same ranking by brute force over every h and c unit
    from rnnkit.cli import load_run

    task, model, _, _ = load_run(run_dir, device="cpu")
    text = corpus.read_text()[:600]
    activity = read_text(model, task.vocab, text, kinds=("h", "c"))
    values = get_predicate("string")(text)
    scores = {f"{l}:{i}:{k}": np.corrcoef(activity.values(Unit(l, i, k)), values)[0, 1]
              for k in "hc" for l in range(2) for i in range(16)}
    best = sorted(scores, key=lambda u: -abs(scores[u]))[:3]
    assert [u for u, _ in ranked] == best
    assert [r for _, r in ranked] == pytest.approx([scores[u] for u in best], abs=2e-3)
    assert "predicate string" in find_out.read_text()

    both = tmp_path / "both.html"  # a unit page and a --find page from one reading
    assert main(["neurons", str(run_dir), "--text", str(corpus), "--chars", "300", "--neuron", "0:1:i",
                 "--find", "column", "--out", str(both)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {both}" in printed and f"wrote {tmp_path / 'both-column.html'}" in printed


def test_neurons_command_errors(run, tmp_path, capsys):
    run_dir, corpus = run
    cases = [
        (["--text", str(corpus)], "give --neuron"),
        (["--text", str(corpus), "--neuron", "x:1"], "expected LAYER:INDEX"),
        (["--text", str(corpus), "--neuron", "1:99"], "out of range 0..15"),
        (["--text", str(corpus), "--neuron", "5:1"], "layer 5 out of range"),
        (["--text", str(corpus), "--find", "strng"], "unknown predicate"),
        (["--text", str(corpus), "--find", "string", "--kinds", "q"], "--kinds 'q': expected"),
        (["--text", str(tmp_path / "none.py"), "--neuron", "0:1"], "no such file"),
    ]
    for extra, message in cases:
        assert main(["neurons", str(run_dir), *extra]) != 0
        assert message in capsys.readouterr().err, extra


def test_word_level_reading_shows_line_ends_and_matches_the_model():
    from rnnkit.data.vocab import WordVocab
    from rnnkit.models import LanguageModel

    torch.manual_seed(0)
    vocab = WordVocab(["def", "f", "(", ")", ":", "return", "x"])
    model = LanguageModel(len(vocab), "lstm", hidden_size=6)
    text = "def f(x):\n    return y\n"
    activity = read_text(model, vocab, text, chunk=3)  # chunks carry the state
    assert activity.pieces == ["def", "f", "(", "x", ")", ":", "\n", "return", "y", "\n"]
    with torch.no_grad():
        logits, _ = model(torch.as_tensor(vocab.encode(text))[None])
    np.testing.assert_allclose(activity.probs, logits[0].softmax(-1).numpy(), atol=1e-6)
    assert activity.top(5)[0][1] == pytest.approx(float(logits[0, 5].softmax(-1).max()), abs=1e-6)
