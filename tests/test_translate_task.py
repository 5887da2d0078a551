"""The `translate` task end to end through the `rnnkit` command, its data and its text metrics."""
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))
from toytask import one_thread_fixture  # noqa: E402

from rnnkit.cli import main  # noqa: E402
from rnnkit.config import ConfigError, load_config  # noqa: E402
from rnnkit.data.numbers import make_number_pairs, sample_by_digits, split_numbers  # noqa: E402
from rnnkit.data.pairs import PairVocab, detokenize, tokenize  # noqa: E402
from rnnkit.metrics.text import bleu, chrf, exact_match, rouge_l, text_metrics  # noqa: E402
from rnnkit.tasks import get_task  # noqa: E402

_one_thread = one_thread_fixture()
ROOT = TESTS.parent


def recipe(tmp_path, data=None, model=None, trainer=None, name="run"):
    config = {
        "task": "translate",
        "data": {"source": "numbers", "train_size": 192, "valid_size": 16, "test_size": 16, "batch_size": 32,
                 "max_source_length": 20,
                 **(data or {})},
        "model": {"hidden_size": 16, **(model or {})},
        "optim": {"name": "adam", "lr": 0.01},
        "trainer": {"max_epochs": 1, "log_every": 100, "metric": "exact_match", "mode": "max", **(trainer or {})},
        "run": {"dir": str(tmp_path / name), "seed": 0, "device": "cpu"},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture(scope="module")
def numbers_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("translate")
    assert main(["train", recipe(tmp)]) == 0
    return tmp / "run"


def test_number_splits_are_disjoint_and_cover_every_digit_count():
    pools = split_numbers(1_000_000, 0.05, 0.05, seed=0)
    assert sum(len(p) for p in pools.values()) == 1_000_000
    assert not set(pools["test"].tolist()) & set(pools["train"].tolist())
    test = sample_by_digits(pools["test"], 600, seed=1)
    assert len(set(test.tolist())) == 600 and set(test.tolist()) <= set(pools["test"].tolist())
    digits = np.char.str_len(test.astype(str))
    counts = np.bincount(digits)[1:]
    pool_counts = np.bincount(np.char.str_len(pools["test"].astype(str)))[1:]
    assert counts[:3].tolist() == pool_counts[:3].tolist()  # the few short test numbers: all of them
    assert counts[3:].min() >= 180  # the rest shared evenly by 4-, 5- and 6-digit numbers


@pytest.mark.parametrize("lang", ["en", "fr", "de", "es"])
def test_words_round_trip_through_the_tokenizer(lang):
    numbers = np.array([0, 7, 21, 71, 80, 91, 99, 101, 412, 1203, 21000, 80080, 999999])
    pairs = make_number_pairs(numbers, "en", lang, "word", "char" if lang == "de" else "word")
    for text, tokens in zip(pairs.target_texts, pairs.targets):
        assert detokenize(tokens, "char" if lang == "de" else "word") == text
    if lang == "fr":
        assert pairs.target_texts[list(numbers).index(412)] == "quatre cent douze"
        assert tokenize("quatre-vingt-dix", "word") == ["quatre", "-", "vingt", "-", "dix"]


def test_text_metrics_on_known_cases():
    assert exact_match(["a b", "c"], ["a b", "d"]) == 0.5
    assert bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100)
    assert chrf(["quatre cent douze"], ["quatre cent douze"]) == pytest.approx(100)
    assert rouge_l(["a c"], ["a b c"]) == pytest.approx(0.8)  # LCS 2: precision 1, recall 2/3
    assert rouge_l(["zéro"], ["zéro"]) == pytest.approx(1.0)  # accents are kept as tokens
    assert bleu(["1769"], ["1779"]) == 0 and 0 < bleu(["1769"], ["1779"], level="char") < 100
    assert rouge_l(["1769"], ["1779"], level="char") == pytest.approx(0.75)
    assert 0 < text_metrics(["quatre cent"], ["quatre cent douze"])["chrf"] < 100
    with pytest.raises(ValueError, match="one reference each"):
        bleu(["a"], ["a", "b"])


def test_vocabulary_reserves_specials_and_maps_unknowns():
    vocab = PairVocab.build([["b", "a"], ["c"]])
    assert vocab.itos[:4] == ["<pad>", "<unk>", "<s>", "</s>"] and vocab.encode(["a", "zz"]) == [4, 1]
    assert vocab.unknown(["a", "zz", "zz"]) == ["zz"] and vocab.decode([4, 5, 3, 6]) == ["a", "b"]
    with pytest.raises(ValueError, match="reserved"):
        PairVocab(["<s>"])


def test_train_translate_eval_and_attention(numbers_run, capsys, tmp_path):
    assert (numbers_run / "best" / "pairs.json").exists()
    capsys.readouterr()
    assert main(["translate", str(numbers_run), "four hundred and twelve", "--beam", "3", "--nbest", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "four hundred and twelve" and len(lines) == 4
    scores = [float(line.split("log p = ")[1].split()[0]) for line in lines[1:]]
    assert scores == sorted(scores, reverse=True)

    assert main(["translate", str(numbers_run), "twelve", "blorp twelve"]) == 0
    assert "'blorp'" in capsys.readouterr().err

    assert main(["eval", str(numbers_run), "--split", "test", "--beam", "2"]) == 0
    out = capsys.readouterr().out
    assert "greedy" in out and "beam 2" in out
    for key in ("exact_match", "bleu", "chrf", "rouge_l"):
        assert key in out

    png = tmp_path / "att.png"
    assert main(["attention", str(numbers_run), "seventy-one", "--plot", str(png)]) == 0
    assert png.stat().st_size > 1000
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split() == ["seventy", "-", "one"]
    weights = [[float(v) for v in row.split()[1:]] for row in rows[1:] if not row.startswith("wrote")]
    assert all(sum(r) == pytest.approx(1.0, abs=0.02) for r in weights)


@pytest.mark.parametrize("argv,message", [
    (["", ], "empty"),
    (["one " * 30], "max_source_length"),
    (["twelve", "--beam", "0"], "--beam must be >= 1"),
    (["twelve", "--beam", "2", "--nbest", "3"], "--nbest 3"),
    (["twelve", "--nbest", "2"], "--nbest needs --beam"),
])
def test_bad_input_is_a_clear_error(numbers_run, capsys, argv, message):
    assert main(["translate", str(numbers_run), *argv]) == 2
    assert message in capsys.readouterr().err


def test_other_runs_are_refused(tmp_path, capsys):
    noattn = recipe(tmp_path, model={"attention": "none"}, data={"train_size": 32}, name="plain")
    assert main(["train", noattn]) == 0
    assert main(["attention", str(tmp_path / "plain"), "twelve"]) == 2
    assert "without attention" in capsys.readouterr().err
    classify = {"task": "classify", "data": {"source": "larger", "length": 4, "train_size": 32, "valid_size": 8,
                                             "test_size": 8, "batch_size": 16},
                "model": {"cell": "gru", "hidden_size": 4}, "trainer": {"max_epochs": 1},
                "run": {"dir": str(tmp_path / "cls"), "device": "cpu"}}
    (tmp_path / "cls.yaml").write_text(yaml.safe_dump(classify))
    assert main(["train", str(tmp_path / "cls.yaml")]) == 0
    assert main(["translate", str(tmp_path / "cls"), "twelve"]) == 2
    assert "'classify' run" in capsys.readouterr().err


def test_config_errors_name_the_key(tmp_path):
    config = load_config(recipe(tmp_path, data={"max_source_length": 3}))
    with pytest.raises(ConfigError, match="data.max_source_length"):
        get_task("translate")(config).prepare_data()
    with pytest.raises(ConfigError, match="target_lang"):
        load_config(recipe(tmp_path, data={"target_lang": "en"}))
    with pytest.raises(ConfigError, match="dot attention"):
        load_config(recipe(tmp_path, model={"attention": "dot", "bidirectional": True}))


@pytest.mark.parametrize("source", ["execute", "addition", "reverse"])
def test_every_source_trains_and_evaluates(tmp_path, source):
    config = load_config(recipe(tmp_path, data={"source": source, "train_size": 64, "length": 2, "nesting": 2,
                                                "max_source_length": 200,
                                                "curriculum": "combined"}, trainer={"max_epochs": 2}))
    from rnnkit.tasks.translate import Translate
    from rnnkit.train import Trainer

    task = Translate(config)
    result = Trainer(config, task, stream=open("/dev/null", "w")).fit()
    assert result.step == 4 and 0 <= result.last_valid["exact_match"] <= 1
    assert task.meta["levels"] == ["char", "char"]


def test_the_shipped_recipes_load():
    configs = ROOT / "configs"
    paths = sorted(configs.glob("translate-*.yaml")) + sorted(configs.glob("execute-*.yaml"))
    paths += [configs / "addition.yaml", configs / "reverse.yaml"]
    assert len(paths) == 7
    for path in paths:
        assert load_config(str(path)).task == "translate", path
